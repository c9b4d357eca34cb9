//! The process's heap: mimalloc for Rust, tuned to give freed memory back to the kernel within
//! about a second, and glibc's `malloc`, which SQLite uses, held to two arenas.
//!
//! Invariant: [`configure`] runs in `main` right after `host::tune_string_functions`, before any
//! other thread starts or any SQLite connection opens.

/// mimalloc instead of glibc's malloc: the pipeline allocates and frees millions of small
/// strings a second across the runtime's and the blocking pool's threads, where glibc's
/// per-thread arenas keep freed memory (RSS) and spend a tenth of the CPU in malloc/free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the process's allocators up: glibc's arenas limited for SQLite, the purge delay, and
/// the purge thread.
pub fn configure() -> anyhow::Result<()> {
    limit_malloc_arenas();
    purge_freed_memory_soon();
    purge_every_second()?;
    Ok(())
}

/// SQLite is C and allocates with glibc's `malloc`, not with the allocator above; glibc gives
/// every thread that allocates its own arena (up to 8 per core), and each reader thread keeps
/// its arena's freed page-cache memory. Two arenas: after the same 19,000 dashboard requests on
/// 100 M events, 572 MiB of RSS instead of 684–706 MiB, at the same latency
/// (`benches/PERFORMANCE-LOG.md`). Handing SQLite mimalloc instead (`SQLITE_CONFIG_MALLOC`)
/// gave back what its caches freed but rounds each 16 KiB page up to a 20 KiB block: in 400 s
/// at 165,000 events/s its page caches peaked at 149 MiB instead of 121 and `VmHWM` was no
/// lower (427 MiB against 416). `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a parameter of glibc's allocator, which takes its own lock;
        // it runs before any other thread starts and any SQLite connection opens.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// mimalloc v3's `mi_option_purge_delay` (`include/mimalloc.h`; the `libmimalloc-sys` bindings
/// name no constant for it). The test below checks it reads mimalloc's default of 1,000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps memory it freed before giving it back (ms).
///
/// mimalloc v3 keeps it for 1 s (whole arenas for 10 s) and asks for transparent huge pages
/// (turned off at build time, the `no_thp` feature). At `tally loadgen --rate 500000` the two
/// held the server's peak RSS at 877–967 MiB; no huge pages and memory given back at once:
/// 507 MiB. But given back at once (0 ms), a dashboard answer's buffers are returned to the
/// kernel after every request and faulted in again by the next: the 30-day feature page at
/// 100 M events took 4.4–4.7 ms p50 instead of 2.8–3.0. Kept 10 ms, they last from one request
/// to the next, and the peak RSS under ingest measured within 3 % (`benches/PERFORMANCE-LOG.md`).
const PURGE_DELAY_MS: std::os::raw::c_long = 10;

/// Sets [`PURGE_DELAY_MS`]; `MIMALLOC_PURGE_DELAY` in the environment still wins.
#[allow(unsafe_code)]
fn purge_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores one option value, which the allocator reads atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// How often the purge thread ([`purge_every_second`]) gives freed memory back.
const PURGE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts a thread that makes mimalloc give back what was freed, once per [`PURGE_PERIOD`],
/// whether or not anything else allocates.
///
/// mimalloc only purges when some thread asks it to, and it asks as a side effect of
/// allocating. Two things then go wrong without this thread:
/// - memory freed just before the process goes quiet stays resident until the next burst;
/// - as we read mimalloc 3.3.2 (`src/arena.c`), a free that schedules an arena's purge while
///   another thread ends a purge pass can leave the arena's expiry set but the process-wide one
///   cleared; every later schedule then sees the arena's expiry already set, and no unforced
///   pass looks at the arena again: nothing freed is given back until a forced collect or a
///   thread's exit (which visits every arena), and under load ours do not exit. That fits
///   what ingest showed about 1 run in 10 at 500,000 events/s: `RssAnon` leaving its usual
///   300–440 MiB for ~1 GiB within seconds and never falling again
///   (`benches/PERFORMANCE-LOG.md`).
///
/// A forced collect visits every arena and purges what was freed, whatever its expiry, and
/// clears the expiry so that the next free schedules afresh: the process leaves that state at
/// the next forced pass. Not always within one period: a pass skips silently while another
/// thread's pass holds mimalloc's purge guard, and the race can recur during a forced pass
/// too. The thread's own heap is nearly empty, so a collect costs little else.
#[allow(unsafe_code)]
fn purge_every_second() -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tally-purge".into())
        .spawn(|| {
            // mimalloc collects nothing for a thread that never allocated.
            std::hint::black_box(Vec::<u64>::with_capacity(8));
            loop {
                std::thread::sleep(PURGE_PERIOD);
                // SAFETY: mi_collect may be called from any thread at any time: it collects this
                // thread's own heap and updates the arenas' bitmaps atomically.
                unsafe { libmimalloc_sys::mi_collect(true) };
            }
        })
}

#[cfg(test)]
mod tests {
    /// The process's own resident memory (`RssAnon`), in MiB.
    #[cfg(target_os = "linux")]
    fn rss_anon_mib() -> f64 {
        tally::loadgen::watch::status_mib(std::process::id(), "RssAnon:").expect("RssAnon")
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn memory_freed_before_a_quiet_spell_goes_back_to_the_kernel() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            // A negative delay turns purging off altogether; the test is for the default.
            return;
        }
        // (Leaves the purge delay as it is: `the_purge_delay_option_is_mimallocs` reads it.)
        super::purge_every_second().expect("started");
        let before = rss_anon_mib();
        // 256 MiB in 64 KiB buffers, every page written, then all freed; afterwards this
        // thread allocates nothing, and neither does any other of this test binary.
        let buffers: Vec<Vec<u8>> = (0..4_096).map(|i| vec![i as u8 | 1; 64 << 10]).collect();
        let held = rss_anon_mib();
        assert!(held >= before + 250.0, "{before} → {held} MiB");
        drop(std::hint::black_box(buffers));
        std::thread::sleep(3 * super::PURGE_PERIOD);
        let after = rss_anon_mib();
        assert!(after < before + 64.0, "{before} → {held} → {after} MiB");
    }

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_mimallocs() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reading an option value.
            let default = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(default, 1_000, "mimalloc v3's purge delay default (ms)");
        }
        super::purge_freed_memory_soon();
        // SAFETY: reading an option value.
        let set = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            set,
            std::env::var("MIMALLOC_PURGE_DELAY")
                .map_or(super::PURGE_DELAY_MS, |v| v.parse().unwrap_or(-2))
        );
    }
}
