//! Small wrappers over browser APIs the pages share: reading a picked file, offering a download
//! (an object URL revoked when it is replaced or the page goes away), and the files of an
//! `<input type="file">` change or a drop.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The first file of an `<input type="file">`'s change event.
pub fn picked_file(ev: &web_sys::Event) -> Option<web_sys::File> {
    ev.target()?
        .dyn_into::<web_sys::HtmlInputElement>()
        .ok()?
        .files()?
        .get(0)
}

/// The first file dropped.
pub fn dropped_file(ev: &web_sys::DragEvent) -> Option<web_sys::File> {
    ev.data_transfer()?.files()?.get(0)
}

/// The file's text (UTF-8).
pub async fn read_text(file: &web_sys::Blob) -> Result<String, String> {
    JsFuture::from(file.text())
        .await
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| "The file could not be read.".to_string())
}

/// The file's bytes.
pub async fn read_bytes(file: &web_sys::Blob) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|_| "The file could not be read.".to_string())?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// A `blob:` URL for `text` typed `mime`, to give to `<a download>`.
pub fn object_url(text: &str, mime: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

pub fn revoke_url(url: &str) {
    let _ = web_sys::Url::revoke_object_url(url);
}

/// `"data:image/png;base64,…"` -> bytes.
pub fn data_url_bytes(data_url: &str) -> Option<Vec<u8>> {
    let b64 = data_url.split_once(',')?.1;
    let binary = web_sys::window()?.atob(b64).ok()?;
    Some(binary.chars().map(|c| c as u8).collect())
}

/// `report.csv` -> `report-predictions.csv`.
pub fn predictions_file_name(input: &str) -> String {
    let stem = input
        .strip_suffix(".csv")
        .or_else(|| input.strip_suffix(".CSV"))
        .unwrap_or(input);
    let stem = if stem.is_empty() { "data" } else { stem };
    format!("{stem}-predictions.csv")
}

/// This page's origin, e.g. `http://127.0.0.1:8080`.
pub fn origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// The `localStorage` key that says this browser kept an unsent update for a group: a hint for
/// the group page (the update itself is in the training worker's IndexedDB, where only a
/// worker reads it), so that a visit without one costs no worker.
fn kept_key(group_id: i64) -> String {
    format!("b3o-kept-update-{group_id}")
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// Notes that an update of `group_id` is kept until the server has it.
pub fn mark_kept(group_id: i64, round: i64) {
    if let Some(s) = local_storage() {
        let _ = s.set_item(&kept_key(group_id), &round.to_string());
    }
}

/// Forgets the note of [`mark_kept`].
pub fn clear_kept(group_id: i64) {
    if let Some(s) = local_storage() {
        let _ = s.remove_item(&kept_key(group_id));
    }
}

/// Whether an update of `group_id` may still be kept in this browser.
pub fn has_kept(group_id: i64) -> bool {
    local_storage()
        .and_then(|s| s.get_item(&kept_key(group_id)).ok().flatten())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_files_are_named_after_the_input() {
        assert_eq!(predictions_file_name("churn.csv"), "churn-predictions.csv");
        assert_eq!(predictions_file_name("x"), "x-predictions.csv");
        assert_eq!(predictions_file_name(".csv"), "data-predictions.csv");
    }
}
