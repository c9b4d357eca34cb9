//! What the `tally` binary adjusts about its own process before anything else runs: glibc's
//! choice of string functions on AMD processors with AVX-512.
//!
//! glibc picks `memcmp`, `strlen` and friends once, at start-up, by the CPU's features; with
//! AVX-512 it takes the EVEX variants, which compare short strings with masked 256-bit loads.
//! On the AMD EPYC (Zen 4) machine Tally is measured on, those masked loads are slow: folding
//! 1,000 events into rollups (a hash lookup per event whose key is eight short strings) took
//! 662 µs with them and 133 µs with the AVX2 variants, and `tally loadgen --rate 500000`
//! acknowledged 466,236 events/s instead of 371,081 (`benches/PERFORMANCE-LOG.md`). glibc reads its
//! tunables only when a process starts, so the binary starts itself again, once, with
//! `GLIBC_TUNABLES` naming AVX-512VL as unusable (which turns those variants off and nothing
//! else Tally relies on).
//!
//! Invariants: the environment's `GLIBC_TUNABLES`, when present (even empty), is left as it
//! is, so an operator can always decide, and the restarted process never restarts again;
//! nothing changes on Intel processors, without AVX-512VL, or off glibc on x86-64 Linux.

use std::ffi::OsStr;

/// The tunable that takes AVX-512VL out of glibc's choice of string functions.
pub const TUNABLES: &str = "glibc.cpu.hwcaps=-AVX512VL";

/// The `GLIBC_TUNABLES` value to start again with: `Some` only when none is set, the CPU is
/// an AMD one (`vendor_id` of `/proc/cpuinfo`) and it has AVX-512VL.
pub fn tunables_to_set(
    current: Option<&OsStr>,
    vendor: Option<&str>,
    avx512vl: bool,
) -> Option<&'static str> {
    (current.is_none() && vendor == Some("AuthenticAMD") && avx512vl).then_some(TUNABLES)
}

/// The first `vendor_id` of a `/proc/cpuinfo` text.
pub fn cpu_vendor(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "vendor_id").then(|| value.trim())
    })
}

/// Starts this binary again with [`TUNABLES`] where [`tunables_to_set`] says so (same
/// arguments, same process id); returns when it does not, or when the start failed (said on
/// standard error, and this process goes on as it is).
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
pub fn tune_string_functions() {
    use std::os::unix::process::CommandExt;
    let current = std::env::var_os("GLIBC_TUNABLES");
    if current.is_some() {
        return;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let Some(tunables) = tunables_to_set(
        current.as_deref(),
        cpu_vendor(&cpuinfo),
        std::arch::is_x86_feature_detected!("avx512vl"),
    ) else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "tally".into());
    // `/proc/self/exe` is this very binary even if its file was replaced since it started.
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    crate::telemetry::say_err(&format!(
        "tally: could not start again with GLIBC_TUNABLES={tunables} ({err}); going on without it"
    ));
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
pub fn tune_string_functions() {}

/// Says (once logging is up) whether this process runs with [`TUNABLES`].
pub fn log_tuning() {
    if std::env::var_os("GLIBC_TUNABLES").as_deref() == Some(OsStr::new(TUNABLES)) {
        tracing::info!(
            glibc_tunables = TUNABLES,
            "glibc's AVX-512 string functions are off on this AMD CPU (set GLIBC_TUNABLES yourself, even empty, to decide otherwise)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_amd_cpu_with_avx512vl_and_no_tunables_set_is_restarted() {
        assert_eq!(
            tunables_to_set(None, Some("AuthenticAMD"), true),
            Some("glibc.cpu.hwcaps=-AVX512VL")
        );
        assert_eq!(tunables_to_set(None, Some("AuthenticAMD"), false), None);
        assert_eq!(tunables_to_set(None, Some("GenuineIntel"), true), None);
        assert_eq!(tunables_to_set(None, None, true), None);
        // The operator's value wins, even an empty one; the restarted process has one.
        for set in ["", "glibc.malloc.arena_max=2", TUNABLES] {
            assert_eq!(
                tunables_to_set(Some(OsStr::new(set)), Some("AuthenticAMD"), true),
                None
            );
        }
    }

    #[test]
    fn the_vendor_is_read_from_the_first_processor() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
        assert_eq!(cpu_vendor(cpuinfo), Some("AuthenticAMD"));
        assert_eq!(cpu_vendor("processor\t: 0\nmodel name\t: x\n"), None);
        assert_eq!(cpu_vendor(""), None);
    }
}
