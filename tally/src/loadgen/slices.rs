//! A long load run cut into slices of equal length (a soak's 5-minute view): per slice, the
//! events acknowledged, acknowledgement latency and the longest time without any
//! acknowledgement (a stall), freshness, query latency, the server's RSS and CPU use, and the
//! retention passes that ended in it.
//!
//! Pure: every input is a list of samples stamped with the time since the run started, and a
//! sample belongs to the slice its stamp falls in (`[k·len, (k+1)·len)`; the last slice ends at
//! the load's end and may be shorter, and samples stamped after the end count in it). Freshness samples are stamped with their
//! acknowledgement, so a slice's freshness describes the events acknowledged in it.

use std::time::Duration;

use serde::Serialize;

use super::{percentiles, Percentiles};

/// What a run recorded, each sample stamped with its time since the run started.
#[derive(Debug, Default)]
pub struct Recorded {
    /// (acknowledged at, events in the batch, acknowledgement latency in ms)
    pub acks: Vec<(Duration, u64, f64)>,
    /// (acknowledged at, ms until the events were visible)
    pub freshness: Vec<(Duration, f64)>,
    /// (answered at, latency in ms, answered 2xx)
    pub queries: Vec<(Duration, f64, bool)>,
    /// (sampled at, server RSS in MiB)
    pub rss: Vec<(Duration, f64)>,
    /// (sampled at, the server's CPU time so far in seconds, user and system)
    pub cpu: Vec<(Duration, f64)>,
    /// (seen at, the pass's duration in seconds)
    pub retention_passes: Vec<(Duration, f64)>,
}

#[derive(Debug, Serialize)]
pub struct SliceReport {
    pub from_s: f64,
    pub to_s: f64,
    pub events_acked: u64,
    pub events_per_second: f64,
    pub ack_latency_ms: Percentiles,
    /// The longest time in the slice without any acknowledgement (from the slice's start, or
    /// the previous acknowledgement, to the next one or the slice's end).
    pub longest_ack_gap_ms: f64,
    pub freshness_ms: Percentiles,
    pub query_ms: Percentiles,
    pub failed_queries: u64,
    pub rss_peak_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// The server's CPU time over the slice's wall time, in percent of one core (200 = two
    /// cores busy): from the last sample before the slice (or its first) to its last.
    pub server_cpu_percent: Option<f64>,
    /// Durations (seconds) of the retention passes the server finished in the slice.
    pub retention_pass_seconds: Vec<f64>,
}

/// `recorded` cut into slices of `len`, the last one ending at `end`.
pub fn slices(recorded: &Recorded, len: Duration, end: Duration) -> Vec<SliceReport> {
    if len.is_zero() || end.is_zero() {
        return Vec::new();
    }
    let count = end.as_nanos().div_ceil(len.as_nanos()) as usize;
    let index = |at: Duration| ((at.as_nanos() / len.as_nanos()) as usize).min(count - 1);
    let mut acks = vec![Vec::new(); count];
    let mut ack_times = vec![Vec::new(); count];
    let mut acked = vec![0u64; count];
    for &(at, events, ms) in &recorded.acks {
        let i = index(at);
        acks[i].push(ms);
        ack_times[i].push(at);
        acked[i] += events;
    }
    let mut freshness = vec![Vec::new(); count];
    for &(at, ms) in &recorded.freshness {
        freshness[index(at)].push(ms);
    }
    let mut queries = vec![Vec::new(); count];
    let mut failed = vec![0u64; count];
    for &(at, ms, ok) in &recorded.queries {
        if ok {
            queries[index(at)].push(ms);
        } else {
            failed[index(at)] += 1;
        }
    }
    let mut rss: Vec<Vec<(Duration, f64)>> = vec![Vec::new(); count];
    for &(at, mib) in &recorded.rss {
        rss[index(at)].push((at, mib));
    }
    let mut cpu: Vec<Vec<(Duration, f64)>> = vec![Vec::new(); count];
    for &(at, seconds) in &recorded.cpu {
        cpu[index(at)].push((at, seconds));
    }
    let mut passes = vec![Vec::new(); count];
    for &(at, seconds) in &recorded.retention_passes {
        passes[index(at)].push(seconds);
    }
    (0..count)
        .map(|i| {
            let from = len * i as u32;
            let to = (from + len).min(end);
            let seconds = (to - from).as_secs_f64();
            let mut times = std::mem::take(&mut ack_times[i]);
            times.sort();
            let mut gap = Duration::ZERO;
            let mut last = from;
            for &t in times.iter().chain(std::iter::once(&to)) {
                gap = gap.max(t.saturating_sub(last));
                last = t;
            }
            SliceReport {
                from_s: from.as_secs_f64(),
                to_s: to.as_secs_f64(),
                events_acked: acked[i],
                events_per_second: acked[i] as f64 / seconds,
                ack_latency_ms: percentiles(std::mem::take(&mut acks[i])),
                longest_ack_gap_ms: gap.as_secs_f64() * 1000.0,
                freshness_ms: percentiles(std::mem::take(&mut freshness[i])),
                query_ms: percentiles(std::mem::take(&mut queries[i])),
                failed_queries: failed[i],
                rss_peak_mib: rss[i].iter().map(|&(_, m)| m).reduce(f64::max),
                rss_end_mib: rss[i].iter().max_by_key(|&&(at, _)| at).map(|&(_, m)| m),
                server_cpu_percent: cpu_percent(
                    cpu[..i].iter().rev().find_map(|c| c.last()),
                    &cpu[i],
                ),
                retention_pass_seconds: std::mem::take(&mut passes[i]),
            }
        })
        .collect()
}

/// CPU seconds over wall seconds, in percent, from `before` (or the first of `samples`) to the
/// last of `samples`; `None` without two distinct sampling times.
fn cpu_percent(before: Option<&(Duration, f64)>, samples: &[(Duration, f64)]) -> Option<f64> {
    let &(from, start) = before.or(samples.first())?;
    let &(to, end) = samples.last()?;
    (to > from).then(|| (end - start) / (to - from).as_secs_f64() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn samples_fall_in_the_slice_of_their_stamp() {
        // Two 10 s slices and a last one of 5 s (the run ended at 25 s).
        let recorded = Recorded {
            acks: vec![
                (s(1.0), 100, 5.0),
                (s(9.5), 100, 7.0),
                (s(10.0), 200, 30.0),
                (s(24.0), 50, 2.0),
            ],
            freshness: vec![(s(1.0), 200.0), (s(12.0), 900.0), (s(13.0), 100.0)],
            queries: vec![
                (s(3.0), 4.0, true),
                (s(4.0), 8.0, false),
                (s(21.0), 6.0, true),
            ],
            rss: vec![
                (s(2.0), 300.0),
                (s(8.0), 350.0),
                (s(9.0), 320.0),
                (s(19.0), 330.0),
            ],
            cpu: vec![
                (s(1.0), 10.0),
                (s(9.0), 14.0),
                (s(11.0), 15.0),
                (s(19.0), 24.0),
            ],
            retention_passes: vec![(s(15.0), 0.4)],
        };
        let out = slices(&recorded, s(10.0), s(25.0));
        assert_eq!(out.len(), 3);
        assert_eq!(
            out.iter().map(|x| (x.from_s, x.to_s)).collect::<Vec<_>>(),
            vec![(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
        );
        assert_eq!(
            out.iter().map(|x| x.events_acked).collect::<Vec<_>>(),
            vec![200, 200, 50]
        );
        // 50 events over the 5 s the last slice lasted.
        assert_eq!(out[2].events_per_second, 10.0);
        assert_eq!(
            (out[0].ack_latency_ms.p50, out[0].ack_latency_ms.max),
            (5.0, 7.0)
        );
        // Slice 0: 0→1→9.5→10, longest 8.5 s; slice 1: 10→10→20, 10 s; slice 2: 20→24→25, 4 s.
        assert_eq!(
            out.iter()
                .map(|x| x.longest_ack_gap_ms.round())
                .collect::<Vec<_>>(),
            vec![8500.0, 10000.0, 4000.0]
        );
        assert_eq!(out[1].freshness_ms.samples, 2);
        assert_eq!(out[1].freshness_ms.max, 900.0);
        assert_eq!(out[1].freshness_ms.p50, 100.0);
        assert_eq!((out[0].query_ms.samples, out[0].failed_queries), (1, 1));
        assert_eq!(out[2].query_ms.p99, 6.0);
        assert_eq!(
            (out[0].rss_peak_mib, out[0].rss_end_mib),
            (Some(350.0), Some(320.0))
        );
        assert_eq!((out[2].rss_peak_mib, out[2].rss_end_mib), (None, None));
        // Slice 0: 4 CPU seconds from 1 s to 9 s; slice 1: 10 from 9 s (the sample before it)
        // to 19 s, both cores busy; slice 2: nothing sampled.
        assert_eq!(out[0].server_cpu_percent, Some(50.0));
        assert_eq!(out[1].server_cpu_percent, Some(100.0));
        assert_eq!(out[2].server_cpu_percent, None);
        assert_eq!(out[1].retention_pass_seconds, vec![0.4]);
        assert!(out[0].retention_pass_seconds.is_empty());
    }

    #[test]
    fn a_sample_stamped_at_the_end_belongs_to_the_last_slice() {
        let recorded = Recorded {
            acks: vec![(s(20.0), 10, 1.0)],
            ..Recorded::default()
        };
        let out = slices(&recorded, s(10.0), s(20.0));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].events_acked, out[1].events_acked), (0, 10));
        assert_eq!(out[0].longest_ack_gap_ms.round(), 10000.0);
    }

    #[test]
    fn no_length_no_slices() {
        assert!(slices(&Recorded::default(), Duration::ZERO, s(5.0)).is_empty());
        assert!(slices(&Recorded::default(), s(5.0), Duration::ZERO).is_empty());
    }
}
