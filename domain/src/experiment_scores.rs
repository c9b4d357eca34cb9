//! The scores of an experiment's variants: from the scores joined to the variant's events
//! ([`crate::store::ScoredEvent`]), per score name, the exact sums of a numeric score (count,
//! Σx, Σx² in millionths, integers, so the mean and its interval are the same whatever the
//! order or the store) or the count of each label of a categorical one; and their summaries
//! (the mean with its t interval; each label's share with its Wilson interval).
//!
//! A name used both with numbers and with labels is summarized twice, once per kind.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use tally_schemas::score::SCORE_SCALE;
use tally_schemas::ScoreValue;

use crate::statistics::{wilson, Moments};
use crate::store::ScoredEvent;

/// Count, sum and sum of squares of a numeric score, in millionths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NumberSums {
    pub n: u64,
    pub sum: i128,
    pub squares: u128,
}

impl NumberSums {
    /// The moments in the score's own unit.
    pub fn moments(&self) -> Moments {
        let m = Moments::from_sums(self.n, self.sum, self.squares);
        let scale = SCORE_SCALE as f64;
        Moments {
            n: m.n,
            mean: m.mean / scale,
            variance: m.variance / (scale * scale),
        }
    }
}

/// One variant's scores, per name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreSums {
    pub numbers: BTreeMap<String, NumberSums>,
    pub labels: BTreeMap<String, BTreeMap<String, u64>>,
}

impl ScoreSums {
    pub fn add(&mut self, name: &str, value: &ScoreValue) {
        match value {
            ScoreValue::Micros(m) => {
                let s = self.numbers.entry(name.to_string()).or_default();
                s.n += 1;
                s.sum += i128::from(*m);
                s.squares = s
                    .squares
                    .saturating_add(u128::from(m.unsigned_abs()).pow(2));
            }
            ScoreValue::Label(label) => {
                *self
                    .labels
                    .entry(name.to_string())
                    .or_default()
                    .entry(label.clone())
                    .or_default() += 1;
            }
        }
    }
}

/// The scores of each variant (by the variant its event named; empty when none).
pub fn by_variant<'a>(
    scored: impl IntoIterator<Item = &'a ScoredEvent>,
) -> BTreeMap<String, ScoreSums> {
    let mut out: BTreeMap<String, ScoreSums> = BTreeMap::new();
    for s in scored {
        out.entry(s.variant.clone())
            .or_default()
            .add(&s.name, &s.value);
    }
    out
}

/// One label's part of a categorical score.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LabelShare {
    pub label: String,
    pub count: u64,
    /// Share of the score's count, 0–100.
    pub share: f64,
    /// Wilson interval of the share at 95 %, 0–100.
    pub share_interval: Option<[f64; 2]>,
}

/// One score name of a variant.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ScoreSummary {
    pub name: String,
    /// `number` (a mean) or `label` (shares).
    pub kind: &'static str,
    /// Scored events (one per `score_id`).
    pub count: u64,
    /// The mean of a numeric score.
    pub mean: Option<f64>,
    /// Its t interval at 95 % (from two scores on).
    pub mean_interval: Option<[f64; 2]>,
    /// Each label of a categorical score, most frequent first.
    pub labels: Vec<LabelShare>,
}

/// The summaries of `sums`, numeric scores first, each kind by name.
pub fn summaries(sums: &ScoreSums) -> Vec<ScoreSummary> {
    let numbers = sums.numbers.iter().map(|(name, s)| {
        let m = s.moments();
        ScoreSummary {
            name: name.clone(),
            kind: "number",
            count: s.n,
            mean: (s.n > 0).then_some(m.mean),
            mean_interval: m.mean_interval().map(|i| [i.low, i.high]),
            labels: Vec::new(),
        }
    });
    let labels = sums.labels.iter().map(|(name, counts)| {
        let n: u64 = counts.values().sum();
        let mut labels: Vec<LabelShare> = counts
            .iter()
            .map(|(label, &count)| LabelShare {
                label: label.clone(),
                count,
                share: crate::measures::pct(count, n),
                share_interval: wilson(count, n).map(|i| [i.low * 100.0, i.high * 100.0]),
            })
            .collect();
        labels.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.label.cmp(&b.label)));
        ScoreSummary {
            name: name.clone(),
            kind: "label",
            count: n,
            mean: None,
            mean_interval: None,
            labels,
        }
    });
    numbers.chain(labels).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(variant: &str, name: &str, value: ScoreValue) -> ScoredEvent {
        ScoredEvent {
            variant: variant.into(),
            name: name.into(),
            value,
        }
    }

    #[test]
    fn a_numeric_score_has_its_mean_and_t_interval() {
        // Scores 1, 2, 3, 4, 5 (in millionths): mean 3, s² = 10/4 = 2.5, se = √(2.5/5) =
        // 0.707107; t(0.975, 4) = 2.776445, so 3 ∓ 1.963243.
        let events: Vec<ScoredEvent> = (1..=5)
            .map(|i| scored("a", "helpfulness", ScoreValue::Micros(i * 1_000_000)))
            .collect();
        let sums = by_variant(&events);
        let [summary] = &summaries(&sums["a"])[..] else {
            panic!("one summary")
        };
        assert_eq!((summary.kind, summary.count), ("number", 5));
        assert!((summary.mean.expect("mean") - 3.0).abs() < 1e-12);
        let [low, high] = summary.mean_interval.expect("interval");
        assert!((low - 1.036757).abs() < 1e-5 && (high - 4.963243).abs() < 1e-5);
    }

    #[test]
    fn labels_are_shares_with_wilson_intervals() {
        // 8 "up" and 2 "down": 80 % up; Wilson at 95 % for 8/10 is [49.02 %, 94.33 %].
        let mut events = vec![scored("b", "thumbs", ScoreValue::Label("down".into())); 2];
        events.extend(vec![
            scored("b", "thumbs", ScoreValue::Label("up".into()));
            8
        ]);
        let sums = by_variant(&events);
        let summary = &summaries(&sums["b"])[0];
        assert_eq!((summary.kind, summary.count), ("label", 10));
        assert_eq!(summary.labels[0].label, "up");
        assert!((summary.labels[0].share - 80.0).abs() < 1e-9);
        let [low, high] = summary.labels[0].share_interval.expect("interval");
        assert!(
            (low - 49.02).abs() < 0.01 && (high - 94.33).abs() < 0.01,
            "{low} {high}"
        );
    }
}
