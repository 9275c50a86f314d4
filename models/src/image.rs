//! Image inputs: PNG/JPEG files to MNIST-style 28x28 greyscale rows, and the IDX format of the
//! MNIST files (optionally gzip-compressed).

use std::io::{Cursor, Read};

use image::imageops::FilterType;
use image::{ImageReader, Limits};

use crate::dataset::Dataset;

/// Side of the model's square input.
pub const SIDE: usize = 28;
/// Largest accepted image side and decoded IDX payload: bounds memory on hostile input.
const MAX_SIDE: u32 = 8192;
const MAX_IDX_BYTES: u64 = 512 << 20;

/// Why an image or IDX file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("IDX {what}: bad magic number {found:#010x} (expected {expected:#010x})")]
    BadMagic {
        what: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("IDX {what}: truncated: {needed} bytes needed, {found} present")]
    Truncated {
        what: &'static str,
        needed: usize,
        found: usize,
    },
    #[error("IDX: gzip stream is corrupt: {0}")]
    Gzip(String),
    #[error("IDX: {images} images but {labels} labels")]
    CountMismatch { images: usize, labels: usize },
    #[error("IDX images are {rows}x{cols}, expected 28x28")]
    WrongSize { rows: usize, cols: usize },
    #[error("IDX labels: label {label} at index {index} is not a digit")]
    BadLabel { index: usize, label: u8 },
}

/// Decodes a PNG or JPEG to the model's input: `SIDE * SIDE` values in `[0, 1]`, row-major.
///
/// Steps: greyscale; resize to 28x28 (triangle filter, aspect ratio not kept); scale to `[0, 1]`;
/// and, because MNIST digits are light on a dark background, **invert when the background is
/// light**: the background is taken to be the one-pixel border of the resized image, and it is
/// light when its mean is above 0.5.
pub fn decode_image(bytes: &[u8]) -> Result<Vec<f32>, ImageError> {
    decode_image_within(bytes, MAX_DECODED_BYTES)
}

/// Most memory [`decode_image`] lets a decoder allocate: a 4096x4096 RGB image fits, a
/// 4096x4096 16-bit RGBA one (which a 127 KiB PNG can declare) does not.
pub const MAX_DECODED_BYTES: u64 = 64 << 20;

/// [`decode_image`] with the decoder's allocations capped at `max_decoded_bytes` (an image
/// that needs more is an [`ImageError::Decode`] naming the limit, refused before decoding).
pub fn decode_image_within(bytes: &[u8], max_decoded_bytes: u64) -> Result<Vec<f32>, ImageError> {
    let err = |e: &dyn std::fmt::Display| ImageError::Decode(e.to_string());
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(&e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(max_decoded_bytes);
    reader.limits(limits);
    // zune-jpeg 0.5's SIMD IDCT panics on some malformed JPEGs (an unwrap, upstream
    // zune-image#361; found by `fuzz/` `image_decoder`): a decoder that panics has met an
    // undecodable file. (Builds with `panic = "abort"`, the browser bundles, cannot catch it.)
    let img = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| ImageError::Decode("the image data is corrupt".into()))?
        .map_err(|e| err(&e))?;
    let grey = img.to_luma8();
    let small = image::imageops::resize(&grey, SIDE as u32, SIDE as u32, FilterType::Triangle);
    let mut pixels: Vec<f32> = small.as_raw().iter().map(|&p| p as f32 / 255.0).collect();
    if border_mean(&pixels) > 0.5 {
        pixels.iter_mut().for_each(|p| *p = 1.0 - *p);
    }
    Ok(pixels)
}

fn border_mean(pixels: &[f32]) -> f32 {
    let (mut sum, mut n) = (0.0, 0);
    for r in 0..SIDE {
        for c in 0..SIDE {
            if r == 0 || c == 0 || r == SIDE - 1 || c == SIDE - 1 {
                sum += pixels[r * SIDE + c];
                n += 1;
            }
        }
    }
    sum / n as f32
}

/// Images of an IDX3 file.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` bytes, row-major.
    pub pixels: Vec<u8>,
}

fn maybe_gunzip(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_IDX_BYTES)
            .read_to_end(&mut out)
            .map_err(|e| ImageError::Gzip(e.to_string()))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn header(
    bytes: &[u8],
    what: &'static str,
    magic: u32,
    dims: usize,
) -> Result<Vec<usize>, ImageError> {
    let needed = 4 + 4 * dims;
    if bytes.len() < needed {
        return Err(ImageError::Truncated {
            what,
            needed,
            found: bytes.len(),
        });
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if word(0) != magic {
        return Err(ImageError::BadMagic {
            what,
            found: word(0),
            expected: magic,
        });
    }
    Ok((1..=dims).map(|i| word(i) as usize).collect())
}

/// Reads an IDX3 image file (magic `0x00000803`), gzip-compressed or not.
pub fn read_idx_images(bytes: &[u8]) -> Result<IdxImages, ImageError> {
    let bytes = maybe_gunzip(bytes)?;
    let dims = header(&bytes, "images", 0x0803, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let needed = count
        .saturating_mul(rows)
        .saturating_mul(cols)
        .saturating_add(16);
    if bytes.len() < needed {
        return Err(ImageError::Truncated {
            what: "images",
            needed,
            found: bytes.len(),
        });
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[16..needed].to_vec(),
    })
}

/// Reads an IDX1 label file (magic `0x00000801`), gzip-compressed or not.
pub fn read_idx_labels(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let bytes = maybe_gunzip(bytes)?;
    let count = header(&bytes, "labels", 0x0801, 1)?[0];
    let needed = count.saturating_add(8);
    if bytes.len() < needed {
        return Err(ImageError::Truncated {
            what: "labels",
            needed,
            found: bytes.len(),
        });
    }
    Ok(bytes[8..needed].to_vec())
}

/// An MNIST-style dataset from IDX image and label files: pixels scaled to `[0, 1]`, labels
/// 0-9 as class indices for [`ModelSpec::mnist_cnn`](crate::model::ModelSpec::mnist_cnn).
pub fn mnist_dataset(images: &[u8], labels: &[u8]) -> Result<Dataset, ImageError> {
    let images = read_idx_images(images)?;
    let labels = read_idx_labels(labels)?;
    if images.rows != SIDE || images.cols != SIDE {
        return Err(ImageError::WrongSize {
            rows: images.rows,
            cols: images.cols,
        });
    }
    if images.count != labels.len() {
        return Err(ImageError::CountMismatch {
            images: images.count,
            labels: labels.len(),
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
        return Err(ImageError::BadLabel { index, label });
    }
    Ok(Dataset {
        features: images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        targets: labels.iter().map(|&l| l as f32).collect(),
        n_rows: images.count,
        row_len: SIDE * SIDE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_images(count: u32, side: u32, pixels: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [0x0803, count, side, side] {
            v.extend(u32::to_be_bytes(w));
        }
        v.extend(std::iter::repeat_n(7u8, pixels));
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_gzipped_idx() {
        let raw = idx_images(2, 28, 2 * 784);
        for bytes in [raw.clone(), gzip(&raw)] {
            let imgs = read_idx_images(&bytes).unwrap();
            assert_eq!(
                (imgs.count, imgs.rows, imgs.cols, imgs.pixels.len()),
                (2, 28, 28, 1568)
            );
        }
        let labels = [0u8, 0, 8, 1, 0, 0, 0, 2, 3, 9];
        assert_eq!(read_idx_labels(&labels).unwrap(), vec![3, 9]);
        let d = mnist_dataset(&raw, &labels).unwrap();
        assert_eq!(
            (d.n_rows, d.row_len, d.targets.clone()),
            (2, 784, vec![3.0, 9.0])
        );
    }

    #[test]
    fn rejects_bad_idx() {
        let raw = idx_images(2, 28, 2 * 784);
        assert!(matches!(
            read_idx_images(&raw[..100]),
            Err(ImageError::Truncated { .. })
        ));
        assert!(matches!(
            read_idx_images(&raw[..10]),
            Err(ImageError::Truncated { .. })
        ));
        let mut bad = raw.clone();
        bad[3] = 0x01;
        assert!(matches!(
            read_idx_images(&bad),
            Err(ImageError::BadMagic { found: 0x0801, .. })
        ));
        assert!(matches!(
            read_idx_images(&gzip(&raw)[..30]),
            Err(ImageError::Gzip(_)) | Err(ImageError::Truncated { .. })
        ));
        assert!(matches!(
            read_idx_labels(&[0, 0, 8, 1, 0, 0, 0, 5, 1]),
            Err(ImageError::Truncated { .. })
        ));
        assert!(matches!(
            mnist_dataset(&raw, &[0, 0, 8, 1, 0, 0, 0, 1, 3]),
            Err(ImageError::CountMismatch { .. })
        ));
        assert!(matches!(
            mnist_dataset(&raw, &[0, 0, 8, 1, 0, 0, 0, 2, 3, 12]),
            Err(ImageError::BadLabel {
                index: 1,
                label: 12
            })
        ));
    }

    fn png(img: image::GrayImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_and_inverts_light_backgrounds() {
        // A dark stroke on white paper, 56x56: becomes a light stroke on black.
        let img = image::GrayImage::from_fn(56, 56, |x, _| {
            image::Luma([if (26..30).contains(&x) { 0 } else { 255 }])
        });
        let px = decode_image(&png(img)).unwrap();
        assert_eq!(px.len(), 784);
        assert!(
            px[0] < 0.01 && px[14 * 28 + 14] > 0.8,
            "{} {}",
            px[0],
            px[14 * 28 + 14]
        );
        // Already MNIST-like: left as is.
        let img =
            image::GrayImage::from_fn(28, 28, |x, _| image::Luma([if x == 14 { 255 } else { 0 }]));
        let px = decode_image(&png(img)).unwrap();
        assert!(px[0] < 0.01 && px[14] > 0.99);
        assert!(matches!(
            decode_image(b"not an image"),
            Err(ImageError::Decode(_))
        ));
    }
}
