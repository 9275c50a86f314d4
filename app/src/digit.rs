//! A hand-drawn digit to the 28x28 input of an MNIST-style model, the way MNIST itself was
//! made: the ink's bounding box is scaled (aspect ratio kept, area-averaged, so strokes become
//! grey at their edges) to fit a 20x20 box, placed in a 28x28 field, and shifted so that its
//! centre of mass sits at the field's centre.
//!
//! Input is a canvas's RGBA pixels with light strokes on a dark background; output is 784
//! values in `[0, 1]`, row-major, white digit on black.

pub const SIDE: usize = 28;
const BOX: f64 = 20.0;
/// Below this intensity a pixel is background (anti-aliasing dust).
const INK: f32 = 0.05;

/// `rgba`: `width * height * 4` bytes. `None` when nothing is drawn.
pub fn mnist_pixels(rgba: &[u8], width: usize, height: usize) -> Option<Vec<f32>> {
    if width == 0 || height == 0 || rgba.len() < width * height * 4 {
        return None;
    }
    let intensity: Vec<f32> = rgba
        .chunks_exact(4)
        .take(width * height)
        .map(|p| p[0].max(p[1]).max(p[2]) as f32 / 255.0 * (p[3] as f32 / 255.0))
        .collect();
    // Bounding box of the ink.
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if intensity[y * width + x] > INK {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x0 == usize::MAX {
        return None;
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop: Vec<f32> = (y0..=y1)
        .flat_map(|y| intensity[y * width + x0..=y * width + x1].iter().copied())
        .collect();
    let scale = BOX / bw.max(bh) as f64;
    let nw = ((bw as f64 * scale).round() as usize).clamp(1, BOX as usize);
    let nh = ((bh as f64 * scale).round() as usize).clamp(1, BOX as usize);
    let small = resample(&crop, bw, bh, nw, nh);

    // Centre of mass of the scaled digit, then the shift that brings it to the field's centre.
    let total: f64 = small.iter().map(|&v| v as f64).sum();
    if total <= 0.0 {
        return None;
    }
    let (mut cx, mut cy) = (0.0, 0.0);
    for y in 0..nh {
        for x in 0..nw {
            let v = small[y * nw + x] as f64;
            cx += v * (x as f64 + 0.5);
            cy += v * (y as f64 + 0.5);
        }
    }
    let (cx, cy) = (cx / total, cy / total);
    let half = SIDE as f64 / 2.0;
    // Where the scaled image's left/top edge goes; kept inside the field.
    let left = ((half - cx).round() as i64).clamp(0, (SIDE - nw) as i64) as usize;
    let top = ((half - cy).round() as i64).clamp(0, (SIDE - nh) as i64) as usize;
    let mut out = vec![0.0f32; SIDE * SIDE];
    for y in 0..nh {
        for x in 0..nw {
            out[(top + y) * SIDE + left + x] = small[y * nw + x].clamp(0.0, 1.0);
        }
    }
    Some(out)
}

/// Area-averaging resize of a `w x h` image to `nw x nh` (separable box filter with
/// fractional coverage).
fn resample(src: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    let rows: Vec<f32> = (0..h)
        .flat_map(|y| resample_line(&src[y * w..(y + 1) * w], nw))
        .collect();
    // Columns of the horizontally resized image.
    let mut out = vec![0.0; nw * nh];
    for x in 0..nw {
        let column: Vec<f32> = (0..h).map(|y| rows[y * nw + x]).collect();
        for (y, v) in resample_line(&column, nh).into_iter().enumerate() {
            out[y * nw + x] = v;
        }
    }
    out
}

/// The mean of `line` over each of `n` equal spans (fractional pixels weighted by coverage).
fn resample_line(line: &[f32], n: usize) -> Vec<f32> {
    let len = line.len() as f64;
    let span = len / n as f64;
    (0..n)
        .map(|i| {
            let (start, end) = (i as f64 * span, (i + 1) as f64 * span);
            let mut sum = 0.0;
            let mut p = start.floor() as usize;
            while (p as f64) < end && p < line.len() {
                let covered = (end.min(p as f64 + 1.0) - start.max(p as f64)).max(0.0);
                sum += covered * line[p] as f64;
                p += 1;
            }
            (sum / span) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w x h` black canvas with white pixels where `ink(x, y)`.
    fn canvas(w: usize, h: usize, ink: impl Fn(usize, usize) -> bool) -> Vec<u8> {
        let mut rgba = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                let v = if ink(x, y) { 255 } else { 0 };
                rgba.extend_from_slice(&[v, v, v, 255]);
            }
        }
        rgba
    }

    fn centre_of_mass(p: &[f32]) -> (f64, f64) {
        let (mut sx, mut sy, mut t) = (0.0, 0.0, 0.0);
        for (i, &v) in p.iter().enumerate() {
            let v = v as f64;
            sx += v * ((i % SIDE) as f64 + 0.5);
            sy += v * ((i / SIDE) as f64 + 0.5);
            t += v;
        }
        (sx / t, sy / t)
    }

    fn bounding_box(p: &[f32]) -> (usize, usize) {
        let xs: Vec<usize> = (0..p.len())
            .filter(|&i| p[i] > 0.0)
            .map(|i| i % SIDE)
            .collect();
        let ys: Vec<usize> = (0..p.len())
            .filter(|&i| p[i] > 0.0)
            .map(|i| i / SIDE)
            .collect();
        (
            xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1,
            ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1,
        )
    }

    #[test]
    fn an_empty_canvas_is_no_digit() {
        assert!(mnist_pixels(&canvas(50, 50, |_, _| false), 50, 50).is_none());
        assert!(mnist_pixels(&[], 0, 0).is_none());
    }

    #[test]
    fn a_stroke_in_a_corner_is_scaled_to_20_pixels_and_centred() {
        // A tall bar, 20x80, in the top-left corner of a 280x280 canvas.
        let rgba = canvas(280, 280, |x, y| {
            (5..25).contains(&x) && (10..90).contains(&y)
        });
        let p = mnist_pixels(&rgba, 280, 280).unwrap();
        assert_eq!(p.len(), 784);
        let (w, h) = bounding_box(&p);
        assert_eq!((w, h), (5, 20), "aspect ratio kept, longest side 20");
        let (cx, cy) = centre_of_mass(&p);
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "{cx} {cy}"
        );
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn the_centre_of_mass_not_the_box_is_centred() {
        // An "L": heavy at the bottom, so its box centre and mass centre differ.
        let rgba = canvas(100, 100, |x, y| {
            ((10..20).contains(&x) && (10..90).contains(&y))
                || ((10..90).contains(&x) && (80..90).contains(&y))
        });
        let p = mnist_pixels(&rgba, 100, 100).unwrap();
        let (cx, cy) = centre_of_mass(&p);
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "{cx} {cy}"
        );
    }

    #[test]
    fn area_averaging_keeps_the_mean() {
        let line = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let out = resample_line(&line, 4);
        let mean_in: f32 = line.iter().sum::<f32>() / 6.0;
        let mean_out: f32 = out.iter().sum::<f32>() / 4.0;
        assert!((mean_in - mean_out).abs() < 1e-6);
        assert_eq!(resample_line(&[0.5], 3), vec![0.5, 0.5, 0.5]);
    }
}
