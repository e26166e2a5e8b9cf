use super::*;

fn backend() -> BackendHealth {
    BackendHealth::new("127.0.0.1:1".parse().unwrap())
}

/// `u` or `d` for each check in `checks` (`P` passes, `F` fails), as `actively_up` says.
fn verdicts(healthy: u32, unhealthy: u32, start_unhealthy: bool, checks: &str) -> String {
    let b = backend();
    checks
        .chars()
        .map(|c| {
            b.observe_check(c == 'P', healthy, unhealthy, 0);
            if b.actively_up(start_unhealthy) {
                'u'
            } else {
                'd'
            }
        })
        .collect()
}

#[test]
fn check_thresholds_flip_the_verdict_only_on_a_full_streak() {
    // (healthy threshold, unhealthy threshold, checks) -> verdict after each check
    for (healthy, unhealthy, checks, expected) in [
        (2, 3, "PPP", "uuu"),
        // N-1 failures keep it up, N mark it down.
        (2, 3, "FF", "uu"),
        (2, 3, "FFF", "uud"),
        (2, 3, "FFFFF", "uuddd"),
        // A pass restarts the failure streak.
        (2, 3, "FFPFF", "uuuuu"),
        (2, 3, "FFPFFF", "uuuuud"),
        // Down: N-1 passes keep it down, N bring it up.
        (2, 3, "FFFP", "uudd"),
        (2, 3, "FFFPP", "uuddu"),
        // Flapping reaches neither threshold: the verdict stays.
        (2, 3, "FFFPFPFP", "uudddddd"),
        (2, 3, "FFFPFPP", "uuddddu"),
        (2, 3, "FFPFFPFF", "uuuuuuuu"),
        (1, 1, "FPFP", "dudu"),
        (3, 2, "FFPPFPPP", "uddddddu"),
    ] {
        assert_eq!(
            verdicts(healthy, unhealthy, false, checks),
            expected,
            "{healthy}/{unhealthy} {checks}"
        );
    }
}

#[test]
fn start_unhealthy_waits_for_a_first_pass_not_for_the_healthy_threshold() {
    assert!(!backend().actively_up(true));
    assert!(backend().actively_up(false));
    for (checks, expected) in [
        ("P", "u"),
        ("F", "d"),
        ("FFP", "ddu"),
        // Marked down before its first pass: then the healthy threshold applies.
        ("FFFP", "dddd"),
        ("FFFPP", "ddddu"),
    ] {
        assert_eq!(verdicts(2, 3, true, checks), expected, "{checks}");
    }
}

#[test]
fn ejections_double_from_base_up_to_max() {
    // (earlier ejections, base, max) -> length
    for (n, base, max, length) in [
        (0, 100, 1_000, 100),
        (1, 100, 1_000, 200),
        (2, 100, 1_000, 400),
        (3, 100, 1_000, 800),
        (4, 100, 1_000, 1_000),
        (9, 100, 1_000, 1_000),
        (0, 100, 50, 50),
        (0, 0, 1_000, 0),
        // The exponent stops at 20.
        (20, 1, u64::MAX, 1 << 20),
        (31, 1, u64::MAX, 1 << 20),
        (u32::MAX, 1, u64::MAX, 1 << 20),
        (20, u64::MAX / 2, u64::MAX, u64::MAX),
    ] {
        assert_eq!(ejection_ms(n, base, max), length, "{n} {base} {max}");
    }
    let b = backend();
    let lengths: Vec<u64> = (0..6)
        .map(|i| b.eject(i * 10_000, 100, 1_000, false))
        .collect();
    assert_eq!(lengths, [100, 200, 400, 800, 1_000, 1_000]);
}

/// What happens to one backend, at a time in ms.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// Ejected (base 100, max 1000), waiting for a passing check or not.
    Eject(u64, bool),
    Check(u64, bool),
    /// A request failed: the failure streak it reports.
    Failure(u64, u32),
    /// A request succeeded (ejections are forgotten 1000 ms after the last one ended).
    Success(u64),
}

/// After each event: (time, ejected then, inside the back-off then).
fn run(events: &[(Event, bool, bool)]) {
    let b = backend();
    for (i, &(event, ejected, running)) in events.iter().enumerate() {
        let now = match event {
            Event::Eject(now, wait) => {
                b.eject(now, 100, 1_000, wait);
                now
            }
            Event::Check(now, passed) => {
                b.observe_check(passed, 1, 1, now);
                now
            }
            Event::Failure(now, streak) => {
                assert_eq!(b.record_failure(now), streak, "event {i}: {event:?}");
                now
            }
            Event::Success(now) => {
                b.record_success(now, 1_000);
                now
            }
        };
        assert_eq!(
            (b.passively_ejected(now), b.ejection_running(now)),
            (ejected, running),
            "event {i}: {event:?}"
        );
    }
}

#[test]
fn an_ejection_ends_at_its_deadline() {
    use Event::*;
    run(&[
        (Failure(0, 1), false, false),
        (Failure(1, 2), false, false),
        (Eject(1_000, false), true, true),
        // Failures of requests sent before the ejection are not counted.
        (Failure(1_050, 0), true, true),
        (Failure(1_099, 0), true, true),
        (Failure(1_100, 1), false, false),
        (Failure(5_000, 2), false, false),
    ]);
}

#[test]
fn with_checks_an_ejected_backend_returns_on_the_first_pass_after_its_back_off() {
    use Event::*;
    run(&[
        (Eject(1_000, true), true, true),
        // A pass during the back-off does not end it.
        (Check(1_050, true), true, true),
        // Past the deadline it still waits for a pass: a failing check is not one.
        (Check(1_100, false), true, false),
        (Failure(1_150, 0), true, false),
        (Check(1_200, true), false, false),
        // Back with a clean failure streak.
        (Failure(1_210, 1), false, false),
    ]);
}

#[test]
fn a_success_ends_the_failure_streak() {
    use Event::*;
    run(&[
        (Failure(0, 1), false, false),
        (Failure(1, 2), false, false),
        (Success(2), false, false),
        (Failure(3, 1), false, false),
    ]);
}

#[test]
fn the_back_off_is_forgotten_after_a_clean_run_longer_than_max() {
    // Ejected at 0 for 100 ms; a success at `at` -> the next ejection starts from base again.
    for (at, forgotten) in [
        (50, false),
        (100, false),
        (1_000, false),
        (1_100, false),
        (1_101, true),
        (50_000, true),
    ] {
        let b = backend();
        assert_eq!(b.eject(0, 100, 1_000, false), 100);
        b.record_success(at, 1_000);
        let next = b.eject(60_000, 100, 1_000, false);
        assert_eq!(
            next == 100,
            forgotten,
            "success at {at}: next ejection {next} ms"
        );
    }
    // Nothing to forget on a backend never ejected, and nothing is ejected by forgetting.
    let b = backend();
    b.record_success(1_000_000, 1_000);
    assert!(!b.passively_ejected(1_000_000));
    assert_eq!(b.eject(0, 100, 1_000, false), 100);
}
