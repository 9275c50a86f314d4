//! Hardening of the inference routes (issue #19, findings 1-3 and the CSV-injection part of 8):
//! hostile bodies get a clear 4xx naming the problem, never an abort, a core pinned for
//! seconds or hundreds of megabytes. Each test is named after what it checks and failed before
//! its fix (noted per test).

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::inference::{churn, churn_csv, digits};

fn v2(shape: serde_json::Value, data: serde_json::Value) -> serde_json::Value {
    json!({ "inputs": [{ "name": "input", "shape": shape, "datatype": "FP32", "data": data }] })
}

/// Before the fix: `memory allocation of 3367254360064 bytes failed`, the test process aborted
/// (the batch size from the body sized an allocation before the data was checked); `2^58`
/// panicked with "capacity overflow"; a product wrapping around 2^64 to the data length ran.
#[tokio::test]
async fn v2_shapes_from_the_body_never_size_an_allocation() {
    let d = digits().await;
    let path = "/v2/models/digits/infer";
    let r = d
        .post_json(path, v2(json!([1073741824u64, 1, 28, 28]), json!([0.5])))
        .await;
    let m = r.error();
    assert!(m.contains("needs") && m.contains("data has 1"), "{m}");
    let r = d
        .post_json(path, v2(json!([1u64 << 58, 1, 28, 28]), json!([0.5])))
        .await;
    assert!(r.error().contains("too large"), "{}", r.text());
    // 784 * wrap overflows to exactly 784 * 1 mod 2^64 = the data's length when unchecked.
    let wrap = (1u128 << 64) / 784 + 1;
    let data = vec![0.5f32; ((wrap * 784) % (1u128 << 64)) as usize];
    let r = d
        .post_json(path, v2(json!([wrap as u64, 784]), json!(data)))
        .await;
    assert!(r.error().contains("too large"), "{}", r.text());
    let r = d.post_json(path, v2(json!([-1, 784]), json!([0.5]))).await;
    assert!(r.error().contains("negative"), "{}", r.text());
    // The server still answers a good request.
    let r = d
        .post_json(path, v2(json!([1, 784]), json!(vec![0.0; 784])))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["shape"], json!([1, 10]));
}

/// Before the fix: the header's duplicate check was quadratic (`names.contains`), so 20,000
/// columns took seconds of a core and were then accepted; 100k took 13.6 s in release.
#[tokio::test]
async fn csv_headers_past_the_column_limit_are_refused_before_parsing() {
    let d = churn().await;
    let mut header: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    header.extend(["age", "country", "balance"].map(String::from));
    let csv = format!("{}\n", header.join(","));
    let r = d
        .call(
            Method::POST,
            "/api/predict/churn/csv",
            "text/csv",
            csv.into_bytes(),
        )
        .await;
    let m = r.error();
    assert!(m.contains("more than 10000 columns"), "{m}");
}

/// Peak RSS of this process (the server runs in it) above the point of the last reset.
struct Peak {
    start_kb: u64,
}

impl Peak {
    fn reset() -> Self {
        // "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
        std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
        Peak {
            start_kb: status_kb("VmRSS"),
        }
    }

    fn above_start_mb(&self) -> u64 {
        status_kb("VmHWM").saturating_sub(self.start_kb) / 1024
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Before the fix: one 16 MiB V2 body took +855 MB (parsed into `serde_json::Value`), four at
/// once 3.9 GB; a 16 MiB `rows` body +424 MB. The bound asserted is the issue's: 300 MB above
/// the idle process for everything at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_mib_v2_and_rows_bodies_at_once_stay_under_300_mb() {
    let d = std::sync::Arc::new(digits().await);
    let c = std::sync::Arc::new(churn().await);
    // Bodies just under the 16 MiB limit, built before the measurement starts.
    // A valid request of 5,000 digit images (15.7 MB): parsed, run and answered.
    let v2_body = {
        let images = 5_000;
        let mut s = format!(
            r#"{{"inputs":[{{"name":"input","datatype":"FP32","shape":[{images},784],"data":["#
        );
        s.push_str(&vec!["0.5"; images * 784].join(","));
        s.push_str("]}]}");
        assert!(s.len() < 16 << 20);
        s.into_bytes()
    };
    let rows_body = {
        let mut s = String::from(r#"{"rows":["#);
        while s.len() < (16 << 20) - 128 {
            s.push_str(r#"{"age":30,"country":"FR","balance":1.5},"#);
        }
        s.push_str(r#"{"age":30,"country":"FR","balance":1.5}]}"#);
        s.into_bytes()
    };
    let bodies: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
        .map(|_| (v2_body.clone(), rows_body.clone()))
        .collect();
    let peak = Peak::reset();
    let mut tasks = Vec::new();
    for (v2, rows) in bodies {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            d.call(
                Method::POST,
                "/v2/models/digits/infer",
                "application/json",
                v2,
            )
            .await
        }));
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.call(
                Method::POST,
                "/api/predict/churn/rows",
                "application/json",
                rows,
            )
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        // Answered, refused (too many rows) or busy; never a 500.
        assert!(
            r.status.is_success()
                || r.status.is_client_error()
                || r.status == StatusCode::SERVICE_UNAVAILABLE,
            "{} {}",
            r.status,
            r.text()
        );
    }
    let mb = peak.above_start_mb();
    eprintln!("peak RSS above the start: {mb} MB");
    assert!(mb < 300, "peak RSS grew by {mb} MB");
}

/// Before the fix: a 127 KiB PNG declaring 4096x4096 16-bit RGBA was decoded (+136 MB each).
#[tokio::test]
async fn images_that_decode_past_the_limit_are_refused_before_decoding() {
    let d = digits().await;
    let png = png_declaring(4096, 4096);
    assert!(png.len() < 1 << 10, "the PNG is small: {} bytes", png.len());
    let r = d
        .call(Method::POST, "/api/predict/digits/image", "image/png", png)
        .await;
    let m = r.error();
    assert!(m.contains("decoded") && m.contains("4096x4096"), "{m}");
}

/// A 16-bit RGBA PNG whose header declares `width` x `height` (its pixels are those of a 1x1
/// image: the header is all a size check may read).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::new(1, 1);
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let mut png = png.into_inner();
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ..., CRC over type + data.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Before the fix: `rows` bodies of any length were accepted.
#[tokio::test]
async fn json_rows_past_the_row_limit_are_named() {
    let c = churn().await;
    let row = json!({ "age": 30, "country": "FR", "balance": 1.5 });
    let rows = vec![row; 100_001];
    let r = c
        .post_json("/api/predict/churn/rows", json!({ "rows": rows }))
        .await;
    let m = r.error();
    assert!(m.contains("more than 100000 rows"), "{m}");
}

/// Before the fix: cells starting with `=`, `+`, `-`, `@` came back unchanged, so a result
/// CSV opened in a spreadsheet ran them (OWASP "CSV injection").
#[tokio::test]
async fn formula_cells_come_back_as_text_in_result_csvs() {
    let d = churn().await;
    let csv = churn_csv(0..3).replacen(
        "C01000,",
        "\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",",
        1,
    );
    let csv = csv.replacen("C01001,", "@SUM(A1),", 1);
    let r = d
        .call(
            Method::POST,
            "/api/predict/churn/csv",
            "text/csv",
            csv.into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("\"'=HYPERLINK("), "{}", lines[1]);
    assert!(lines[2].starts_with("'@SUM(A1),"), "{}", lines[2]);
    // Numbers stay numbers: a negative value is data, not a formula.
    assert!(lines[3].starts_with("C01002,"), "{}", lines[3]);
}
