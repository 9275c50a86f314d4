//! A reusable "Copy" button: puts a text on the clipboard and says whether it worked, in a
//! live region next to the button (used for the embed snippet; meant for join codes and
//! tokens too).

use leptos::prelude::*;

/// Writes `text` to the clipboard; `false` when the browser refuses (no permission, not a
/// secure context, no Clipboard API).
pub async fn write_clipboard(text: &str) -> bool {
    let Some(clipboard) = web_sys::window().map(|w| w.navigator().clipboard()) else {
        return false;
    };
    wasm_bindgen_futures::JsFuture::from(clipboard.write_text(text))
        .await
        .is_ok()
}

/// A button with the id `id` that copies `text`, then says "Copied." (or how to copy by
/// hand) in a status message; `what` names the text for screen readers ("the snippet").
#[component]
pub fn CopyButton(id: &'static str, text: String, what: &'static str) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        let text = text.clone();
        leptos::task::spawn_local(async move {
            copied.set(Some(write_clipboard(&text).await));
        });
    };
    view! {
        <span class="copy">
            <button type="button" class="secondary copy-button" id=id
                aria-label=format!("Copy {what}") on:click=copy>
                "Copy"
            </button>
            <span class="hint copy-status" role="status" data-copied=move || match copied.get() {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            }>
                {move || match copied.get() {
                    Some(true) => "Copied.",
                    Some(false) => "Could not copy: select the text and press Ctrl+C (⌘C).",
                    None => "",
                }}
            </span>
        </span>
    }
}
