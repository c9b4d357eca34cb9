//! The statistics an experiment's verdicts rest on: confidence intervals for a proportion
//! (Wilson) and a mean (Student's t), the two-proportion z-test, Welch's t-test, Pearson's
//! chi-square goodness-of-fit test, and the sample size a two-group comparison needs for a
//! given power. Distributions come from `statrs`; everything here is pure arithmetic on
//! counts and moments, so the same sums give the same answers in every mode.
//!
//! Conventions: intervals and tests are two-sided at [`CONFIDENCE`] (95 %); a test is
//! `None` when it is undefined (an empty group, no variance at all).

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// Confidence level of every interval, and 1 − α of every test.
pub const CONFIDENCE: f64 = 0.95;

/// Power the sample-size estimates aim for.
pub const POWER: f64 = 0.80;

fn standard_normal() -> Normal {
    Normal::standard()
}

/// The standard normal quantile at `p` (0 < p < 1).
pub fn z_quantile(p: f64) -> f64 {
    standard_normal().inverse_cdf(p)
}

/// `z` of the two-sided interval at [`CONFIDENCE`] (1.959964…).
pub fn z_two_sided() -> f64 {
    z_quantile(1.0 - (1.0 - CONFIDENCE) / 2.0)
}

/// Two-sided p-value of a standard normal statistic.
fn normal_p(z: f64) -> f64 {
    (2.0 * standard_normal().sf(z.abs())).min(1.0)
}

/// A test's statistic, its degrees of freedom where the distribution has them, and its
/// two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub statistic: f64,
    pub df: Option<f64>,
    pub p_value: f64,
}

/// A closed interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Wilson's score interval for `successes` out of `n` (`None` when `n` is 0): unlike the
/// normal approximation it stays within [0, 1] and is sensible at 0 or `n` successes.
pub fn wilson(successes: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (k, n) = (successes as f64, n as f64);
    let z = z_two_sided();
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// Count, mean and unbiased variance of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    /// Sample variance (divisor n − 1); 0 when n < 2.
    pub variance: f64,
}

impl Moments {
    /// Moments of a plain list of values (two passes).
    pub fn of(values: &[f64]) -> Moments {
        let n = values.len() as u64;
        if n == 0 {
            return Moments {
                n,
                mean: 0.0,
                variance: 0.0,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let variance = if n < 2 {
            0.0
        } else {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        };
        Moments { n, mean, variance }
    }

    /// Moments of `n` integer values from their exact sum and sum of squares, computed in
    /// integers where they fit (no cancellation), in floating point otherwise.
    pub fn from_sums(n: u64, sum: i128, sum_of_squares: u128) -> Moments {
        if n == 0 {
            return Moments {
                n,
                mean: 0.0,
                variance: 0.0,
            };
        }
        let mean = sum as f64 / n as f64;
        if n < 2 {
            return Moments {
                n,
                mean,
                variance: 0.0,
            };
        }
        // n·Σx² − (Σx)², over n(n − 1).
        let exact = u128::from(n)
            .checked_mul(sum_of_squares)
            .zip(sum.unsigned_abs().checked_mul(sum.unsigned_abs()))
            .map(|(a, b)| a.saturating_sub(b) as f64);
        let spread = exact
            .unwrap_or_else(|| (n as f64 * sum_of_squares as f64 - (sum as f64).powi(2)).max(0.0));
        Moments {
            n,
            mean,
            variance: spread / (n as f64 * (n - 1) as f64),
        }
    }

    /// Standard error of the mean (`None` below two values).
    pub fn standard_error(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.variance / self.n as f64).sqrt())
    }

    /// The mean's interval at [`CONFIDENCE`] from Student's t with n − 1 degrees of freedom
    /// (`None` below two values).
    pub fn mean_interval(&self) -> Option<Interval> {
        let se = self.standard_error()?;
        let t = StudentsT::new(0.0, 1.0, (self.n - 1) as f64)
            .ok()?
            .inverse_cdf(1.0 - (1.0 - CONFIDENCE) / 2.0);
        Some(Interval {
            low: self.mean - t * se,
            high: self.mean + t * se,
        })
    }
}

/// The two-proportion z-test (pooled standard error) of `k1/n1` against `k2/n2`; the statistic
/// is positive when the second proportion is higher. `None` when a group is empty or both
/// proportions are 0 or both 1 (no variance).
pub fn two_proportions(k1: u64, n1: u64, k2: u64, n2: u64) -> Option<Test> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (p2 - p1) / se;
    Some(Test {
        statistic: z,
        df: None,
        p_value: normal_p(z),
    })
}

/// The interval at [`CONFIDENCE`] of `p2 − p1` (unpooled Wald), for reporting the size of a
/// difference next to [`two_proportions`].
pub fn proportion_difference(k1: u64, n1: u64, k2: u64, n2: u64) -> Option<Interval> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
    let z = z_two_sided();
    Some(Interval {
        low: p2 - p1 - z * se,
        high: p2 - p1 + z * se,
    })
}

/// Welch's t-test of `b`'s mean against `a`'s (unequal variances, Welch–Satterthwaite degrees
/// of freedom), with the interval of `b.mean − a.mean`. The statistic is positive when `b`'s
/// mean is higher. `None` when a group has fewer than two values or neither varies.
pub fn welch(a: &Moments, b: &Moments) -> Option<(Test, Interval)> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.variance / a.n as f64, b.variance / b.n as f64);
    let se = (va + vb).sqrt();
    if se == 0.0 || !se.is_finite() {
        return None;
    }
    let df = (va + vb).powi(2) / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let t = (b.mean - a.mean) / se;
    let p = (2.0 * dist.sf(t.abs())).min(1.0);
    let q = dist.inverse_cdf(1.0 - (1.0 - CONFIDENCE) / 2.0);
    Some((
        Test {
            statistic: t,
            df: Some(df),
            p_value: p,
        },
        Interval {
            low: b.mean - a.mean - q * se,
            high: b.mean - a.mean + q * se,
        },
    ))
}

/// Pearson's chi-square goodness-of-fit test of `observed` counts against `shares` (any
/// positive weights; normalised here). `None` with fewer than two categories, no observations,
/// or a category whose expected share is 0.
pub fn chi_square_fit(observed: &[u64], shares: &[f64]) -> Option<Test> {
    if observed.len() < 2 || observed.len() != shares.len() {
        return None;
    }
    let total: u64 = observed.iter().sum();
    let weight: f64 = shares.iter().sum();
    if total == 0 || shares.iter().any(|s| *s <= 0.0) {
        return None;
    }
    let statistic: f64 = observed
        .iter()
        .zip(shares)
        .map(|(&o, &s)| {
            let expected = total as f64 * s / weight;
            (o as f64 - expected).powi(2) / expected
        })
        .sum();
    let df = (observed.len() - 1) as f64;
    let p = ChiSquared::new(df).ok()?.sf(statistic);
    Some(Test {
        statistic,
        df: Some(df),
        p_value: p,
    })
}

/// Requests per group for a two-sided test at [`CONFIDENCE`] to detect the difference between
/// proportions `p1` and `p2` with [`POWER`] (normal approximation, no continuity correction).
/// `None` when the proportions are equal (no difference to detect).
pub fn sample_size_proportions(p1: f64, p2: f64) -> Option<u64> {
    let delta = (p2 - p1).abs();
    if delta == 0.0 || !delta.is_finite() {
        return None;
    }
    let pooled = (p1 + p2) / 2.0;
    let za = z_two_sided();
    let zb = z_quantile(POWER);
    let n = (za * (2.0 * pooled * (1.0 - pooled)).sqrt()
        + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt())
    .powi(2)
        / (delta * delta);
    Some(n.ceil() as u64)
}

/// Values per group for a two-sided test at [`CONFIDENCE`] to detect a difference `delta`
/// between two means with variances `var1` and `var2`, with [`POWER`] (normal approximation).
/// `None` when `delta` is 0.
pub fn sample_size_means(var1: f64, var2: f64, delta: f64) -> Option<u64> {
    let delta = delta.abs();
    if delta == 0.0 || !delta.is_finite() {
        return None;
    }
    let z = z_two_sided() + z_quantile(POWER);
    let n = z * z * (var1 + var2) / (delta * delta);
    n.is_finite().then(|| n.ceil() as u64)
}

#[cfg(test)]
mod tests {
    //! Every expected value below is from a published worked example or computed by hand
    //! from the definitions, never by the functions under test.
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} is not within {tolerance} of {expected}"
        );
    }

    #[test]
    fn wilson_intervals_match_newcombes_table() {
        // Newcombe (1998), Statistics in Medicine 17:857–872, table II, method 3 (score).
        for (k, n, low, high) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let i = wilson(k, n).expect("interval");
            close(i.low, low, 0.00006);
            close(i.high, high, 0.00006);
        }
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn welch_matches_the_textbook_example() {
        // The first worked example of Welch's t-test on Wikipedia (two samples of 15):
        // t = −2.46, ν ≈ 25.0, p = 0.021 (A2's mean is higher, so here the sign is +).
        let a1 = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let a2 = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let (test, interval) = welch(&Moments::of(&a1), &Moments::of(&a2)).expect("test");
        close(test.statistic, 2.46, 0.005);
        close(test.df.expect("df"), 25.0, 0.05);
        close(test.p_value, 0.021, 0.0005);
        // Difference of the means, by hand: 344.8/15 − 312.3/15 = 32.5/15 = 2.1667.
        close((interval.low + interval.high) / 2.0, 32.5 / 15.0, 1e-9);
        assert!(interval.low > 0.0, "p < 0.05, so the interval excludes 0");
    }

    #[test]
    fn two_proportion_z_by_hand() {
        // 30/500 against 45/500: pooled p = 75/1000, se = √(0.075·0.925·(2/500)) = 0.016658…,
        // z = 0.03 / se = 1.80090, p = 2·(1 − Φ(1.80090)) = 0.07172.
        let t = two_proportions(30, 500, 45, 500).expect("test");
        close(t.statistic, 1.80090, 0.00005);
        close(t.p_value, 0.07172, 0.00005);
        assert_eq!(two_proportions(0, 10, 0, 10), None);
        assert_eq!(two_proportions(0, 0, 1, 10), None);
    }

    #[test]
    fn chi_square_by_hand() {
        // 44 and 56 against a 50/50 split: χ² = 36/50 + 36/50 = 1.44 with 1 df;
        // p = 2·(1 − Φ(√1.44)) = 2·(1 − Φ(1.2)) = 0.23014.
        let t = chi_square_fit(&[44, 56], &[50.0, 50.0]).expect("test");
        close(t.statistic, 1.44, 1e-12);
        close(t.p_value, 0.23014, 0.00005);
        // 90/10 against 50/50 is a clear mismatch: χ² = 2·40²/50 = 64.
        let t = chi_square_fit(&[90, 10], &[1.0, 1.0]).expect("test");
        close(t.statistic, 64.0, 1e-9);
        assert!(t.p_value < 1e-14);
        // Three categories, 20/30/50 expected of 200: (40−40)²/40 + (70−60)²/60 + (90−100)²/100
        // = 0 + 1.6667 + 1 = 2.6667 with 2 df; p = e^(−χ²/2) = 0.26360.
        let t = chi_square_fit(&[40, 70, 90], &[20.0, 30.0, 50.0]).expect("test");
        close(t.statistic, 8.0 / 3.0, 1e-9);
        close(t.p_value, (-4.0f64 / 3.0).exp(), 1e-9);
    }

    #[test]
    fn mean_interval_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32/7, se = √(32/56) = 0.75593;
        // t(0.975, 7) = 2.364624, so 5 ± 1.78749.
        let m = Moments::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        close(m.variance, 32.0 / 7.0, 1e-12);
        let i = m.mean_interval().expect("interval");
        close(i.low, 5.0 - 1.78749, 0.00005);
        close(i.high, 5.0 + 1.78749, 0.00005);
        // The same values from their sums: Σx = 40, Σx² = 232.
        let s = Moments::from_sums(8, 40, 232);
        close(s.mean, 5.0, 1e-12);
        close(s.variance, 32.0 / 7.0, 1e-12);
        // Identical values have no spread, exactly (no cancellation error).
        let same = Moments::from_sums(1_000, 1_000 * 123_456_789, 1_000 * 123_456_789u128.pow(2));
        assert_eq!(same.variance, 0.0);
    }

    #[test]
    fn sample_sizes_match_the_usual_tables() {
        // 10 % against 15 %, two-sided 5 %, 80 % power: 686 per group (Fleiss, without
        // continuity correction).
        assert_eq!(sample_size_proportions(0.10, 0.15), Some(686));
        assert_eq!(sample_size_proportions(0.1, 0.1), None);
        // Means: (1.959964 + 0.841621)² · 2σ² / δ² with σ = δ gives 15.70 → 16 per group.
        assert_eq!(sample_size_means(1.0, 1.0, 1.0), Some(16));
    }
}
