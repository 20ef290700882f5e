//! Principal component analysis onto two dimensions.
//!
//! For points `s(1..n)` in `ℝ^d` with mean `m`, the covariance is
//! `C = 1/n Σ_i (s(i) - m)(s(i) - m)ᵀ`; the first two principal components are the unit
//! eigenvectors `v1`, `v2` of its two largest eigenvalues `λ1 ≥ λ2` (the variances along them),
//! and a point projects to `(v1ᵀ(s - m), v2ᵀ(s - m))`.
//!
//! The two eigenvectors come from subspace (orthogonal) iteration followed by an exact 2×2
//! Rayleigh–Ritz step, written out here (about forty lines) rather than taken from a linear
//! algebra crate: the only other choice that needs no system library, `nalgebra`, would add
//! its dependency tree to every build of unfold for two eigenvectors of one small matrix.

use unfold_nn::{Error, Result};

/// Iterations of the subspace iteration at most; it stops earlier once the 2-D subspace stops
/// moving.
const MAX_ITERATIONS: usize = 2000;
/// Stop when no basis vector moves by more than this (in Euclidean norm) in one iteration.
const TOLERANCE: f64 = 1e-12;

/// The first two principal components of a set of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The mean `m`, length `d`.
    pub mean: Vec<f64>,
    /// The unit eigenvectors `v1`, `v2` of the covariance, each of length `d`, orthogonal.
    pub components: [Vec<f64>; 2],
    /// The variances along them, `λ1 ≥ λ2 ≥ 0`.
    pub variances: [f64; 2],
    /// The total variance `trace(C)`, to tell what share `λ1` and `λ2` explain.
    pub total_variance: f64,
}

impl Pca {
    /// Fits the first two principal components of `points` (each of the same length `d`).
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if there are fewer than two points or `d` is 0; [`Error::Shape`] if the
    /// points differ in length; [`Error::NonFinite`] on a NaN or infinite coordinate.
    pub fn fit(points: &[Vec<f32>]) -> Result<Self> {
        let d = check_points("states", points)?;
        let n = points.len() as f64;
        let mut mean = vec![0.0; d];
        for p in points {
            for (m, &v) in mean.iter_mut().zip(p) {
                *m += v as f64 / n;
            }
        }
        // C = 1/n Σ (s - m)(s - m)ᵀ, filled in the upper triangle and mirrored.
        let mut cov = vec![0.0; d * d];
        let mut centred = vec![0.0; d];
        for p in points {
            for ((c, &v), m) in centred.iter_mut().zip(p).zip(&mean) {
                *c = v as f64 - m;
            }
            for i in 0..d {
                let ci = centred[i] / n;
                if ci == 0.0 {
                    continue;
                }
                let row = &mut cov[i * d..(i + 1) * d];
                for j in i..d {
                    row[j] += ci * centred[j];
                }
            }
        }
        for i in 0..d {
            for j in 0..i {
                cov[i * d + j] = cov[j * d + i];
            }
        }
        let total_variance = (0..d).map(|i| cov[i * d + i]).sum();
        let (components, variances) = top_two_eigenpairs(&cov, d);
        Ok(Self {
            mean,
            components,
            variances,
            total_variance,
        })
    }

    /// `(v1ᵀ(s - m), v2ᵀ(s - m))`.
    pub fn project(&self, point: &[f32]) -> [f64; 2] {
        let along = |v: &[f64]| {
            point
                .iter()
                .zip(&self.mean)
                .zip(v)
                .map(|((&s, m), v)| (s as f64 - m) * v)
                .sum()
        };
        [along(&self.components[0]), along(&self.components[1])]
    }

    /// The share of the total variance along each component, `λ / trace(C)` (0 when the points
    /// are all equal).
    pub fn explained(&self) -> [f64; 2] {
        if self.total_variance > 0.0 {
            self.variances.map(|v| v / self.total_variance)
        } else {
            [0.0; 2]
        }
    }
}

/// Checks the points are at least two, of one non-zero length, finite; returns the length.
pub(crate) fn check_points(arg: &'static str, points: &[Vec<f32>]) -> Result<usize> {
    if points.len() < 2 {
        return Err(Error::Empty {
            arg,
            what: format!("{} point(s) given, at least 2 are needed", points.len()),
        });
    }
    let d = points[0].len();
    if d == 0 {
        return Err(Error::Empty {
            arg,
            what: "the points have no coordinates".into(),
        });
    }
    if let Some(bad) = points.iter().find(|p| p.len() != d) {
        return Err(Error::shape(
            arg,
            format!("[{}, {d}] (every point as long as the first)", points.len()),
            &[bad.len()],
        ));
    }
    if points.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { arg });
    }
    Ok(d)
}

/// The two largest eigenpairs of the symmetric positive semi-definite `d × d` matrix `a`
/// (row-major), eigenvalues in decreasing order.
fn top_two_eigenpairs(a: &[f64], d: usize) -> ([Vec<f64>; 2], [f64; 2]) {
    if d == 1 {
        return ([vec![1.0], vec![0.0]], [a[0], 0.0]);
    }
    let multiply = |v: &[f64]| -> Vec<f64> {
        (0..d)
            .map(|i| {
                a[i * d..(i + 1) * d]
                    .iter()
                    .zip(v)
                    .map(|(x, y)| x * y)
                    .sum()
            })
            .collect()
    };
    // A deterministic start that no eigenvector of a real covariance is orthogonal to by
    // accident (unlike e₁ or the all-ones vector), then Gram–Schmidt each iteration.
    let mut q1: Vec<f64> = (0..d).map(|i| 1.0 + 1.0 / (i + 2) as f64).collect();
    let mut q2: Vec<f64> = (0..d).map(|i| ((i * 7 + 3) % 11) as f64 - 5.0).collect();
    orthonormalise(&mut q1, &mut q2);
    for _ in 0..MAX_ITERATIONS {
        let (mut z1, mut z2) = (multiply(&q1), multiply(&q2));
        if !orthonormalise(&mut z1, &mut z2) {
            // A rank-0 or rank-1 matrix: the range is spanned already.
            break;
        }
        let moved = distance(&z1, &q1).max(distance(&z2, &q2));
        q1 = z1;
        q2 = z2;
        if moved < TOLERANCE {
            break;
        }
    }
    // Rayleigh–Ritz: the eigenpairs of the 2×2 matrix B = Qᵀ A Q give the best eigenvectors
    // inside span(q1, q2), and exact ones once the span is the top eigenspace.
    let (a1, a2) = (multiply(&q1), multiply(&q2));
    let (b11, b12, b22) = (dot(&q1, &a1), dot(&q1, &a2), dot(&q2, &a2));
    let mean = 0.5 * (b11 + b22);
    let radius = (0.25 * (b11 - b22).powi(2) + b12 * b12).sqrt();
    let (l1, l2) = (mean + radius, mean - radius);
    // Eigenvector of B for l1: (b12, l1 - b11), or (l1 - b22, b12); pick the better scaled.
    let (c1, s1) = if (l1 - b11).abs() + b12.abs() > (l1 - b22).abs() + b12.abs() {
        (b12, l1 - b11)
    } else {
        (l1 - b22, b12)
    };
    let norm = c1.hypot(s1);
    let (c, s) = if norm > 0.0 {
        (c1 / norm, s1 / norm)
    } else {
        (1.0, 0.0)
    };
    let v1: Vec<f64> = q1.iter().zip(&q2).map(|(x, y)| c * x + s * y).collect();
    let v2: Vec<f64> = q1.iter().zip(&q2).map(|(x, y)| -s * x + c * y).collect();
    ([v1, v2], [l1.max(0.0), l2.max(0.0)])
}

/// Gram–Schmidt on two vectors; false if they span fewer than two dimensions.
fn orthonormalise(u: &mut [f64], v: &mut [f64]) -> bool {
    let nu = dot(u, u).sqrt();
    if nu == 0.0 {
        return false;
    }
    u.iter_mut().for_each(|x| *x /= nu);
    let p = dot(u, v);
    v.iter_mut().zip(u.iter()).for_each(|(y, x)| *y -= p * x);
    let nv = dot(v, v).sqrt();
    if nv <= 1e-14 * nu {
        return false;
    }
    v.iter_mut().for_each(|y| *y /= nv);
    true
}

fn dot(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(x, y)| x * y).sum()
}

fn distance(u: &[f64], v: &[f64]) -> f64 {
    u.iter()
        .zip(v)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points `a_i e + b_i f + noise` for orthonormal `e`, `f` in ℝ^5 and known spreads.
    fn planted(n: usize) -> (Vec<Vec<f32>>, [Vec<f64>; 2]) {
        let s = 0.5f64.sqrt();
        let e = vec![s, s, 0.0, 0.0, 0.0];
        let f = vec![0.0, 0.0, 0.6, 0.8, 0.0];
        let points = (0..n)
            .map(|i| {
                let t = i as f64 / n as f64 * std::f64::consts::TAU;
                // Spreads 3 and 1 along e and f, a little along e₅, offset by 2 everywhere.
                let (a, b, c) = (3.0 * t.cos(), 1.0 * (2.0 * t).sin(), 0.1 * (5.0 * t).cos());
                (0..5)
                    .map(|k| (2.0 + a * e[k] + b * f[k] + if k == 4 { c } else { 0.0 }) as f32)
                    .collect()
            })
            .collect();
        (points, [e, f])
    }

    #[test]
    fn components_recover_planted_directions() {
        let (points, [e, f]) = planted(400);
        let pca = Pca::fit(&points).unwrap();
        // Up to sign; f32 storage of the points limits the agreement to ~1e-6.
        assert!((dot(&pca.components[0], &e).abs() - 1.0).abs() < 1e-6);
        assert!((dot(&pca.components[1], &f).abs() - 1.0).abs() < 1e-6);
        // Var(3 cos t) = 4.5, Var(sin 2t) = 0.5 over whole periods.
        assert!((pca.variances[0] - 4.5).abs() < 1e-4, "{:?}", pca.variances);
        assert!((pca.variances[1] - 0.5).abs() < 1e-4, "{:?}", pca.variances);
        assert!((pca.mean[0] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn two_dimensional_data_matches_closed_form_eigenvectors() {
        // Any 2-D covariance [[p, q], [q, r]] has eigenvalues (p+r)/2 ± √(((p-r)/2)² + q²).
        let points: Vec<Vec<f32>> = [[0.0, 0.0], [1.0, 2.0], [3.0, 1.0], [4.0, 5.0], [2.0, -1.0]]
            .iter()
            .map(|p| p.to_vec())
            .collect();
        let n = points.len() as f64;
        let mx = points.iter().map(|p| p[0] as f64).sum::<f64>() / n;
        let my = points.iter().map(|p| p[1] as f64).sum::<f64>() / n;
        let (mut p, mut q, mut r) = (0.0, 0.0, 0.0);
        for pt in &points {
            let (dx, dy) = (pt[0] as f64 - mx, pt[1] as f64 - my);
            p += dx * dx / n;
            q += dx * dy / n;
            r += dy * dy / n;
        }
        let half = ((p - r) / 2.0f64).hypot(q);
        let (l1, l2) = ((p + r) / 2.0 + half, (p + r) / 2.0 - half);
        let pca = Pca::fit(&points).unwrap();
        assert!((pca.variances[0] - l1).abs() < 1e-12);
        assert!((pca.variances[1] - l2).abs() < 1e-12);
        assert!((pca.total_variance - (p + r)).abs() < 1e-12);
        let v = &pca.components[0];
        // (C - l1 I) v = 0.
        assert!(((p - l1) * v[0] + q * v[1]).abs() < 1e-12);
        assert!((q * v[0] + (r - l1) * v[1]).abs() < 1e-12);
    }

    #[test]
    fn projections_have_the_component_variances() {
        let (points, _) = planted(300);
        let pca = Pca::fit(&points).unwrap();
        let projected: Vec<[f64; 2]> = points.iter().map(|p| pca.project(p)).collect();
        for k in 0..2 {
            let mean = projected.iter().map(|p| p[k]).sum::<f64>() / 300.0;
            let var = projected.iter().map(|p| (p[k] - mean).powi(2)).sum::<f64>() / 300.0;
            assert!(mean.abs() < 1e-6);
            assert!((var - pca.variances[k]).abs() < 1e-6 * pca.variances[k]);
        }
        assert!(dot(&pca.components[0], &pca.components[1]).abs() < 1e-12);
    }

    #[test]
    fn bad_points_are_refused() {
        assert!(matches!(Pca::fit(&[vec![1.0]]), Err(Error::Empty { .. })));
        assert!(matches!(
            Pca::fit(&[vec![1.0, 2.0], vec![1.0]]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            Pca::fit(&[vec![1.0, f32::NAN], vec![1.0, 2.0]]),
            Err(Error::NonFinite { .. })
        ));
    }

    #[test]
    fn identical_points_have_zero_variance() {
        let pca = Pca::fit(&vec![vec![1.0, 2.0, 3.0]; 4]).unwrap();
        assert_eq!(pca.variances, [0.0, 0.0]);
        assert_eq!(pca.explained(), [0.0, 0.0]);
    }
}
