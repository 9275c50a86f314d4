//! The image half of `/predict`: upload a PNG or JPEG, or draw a digit ([`super::draw`]), and
//! see each label's probability.

use leptos::prelude::*;

use super::draw::DrawDigit;
use super::{ModelInfo, Runner, fall_back, server_error};
use crate::api;
use crate::browser;
use crate::charts::probability_bars;
use crate::engine::{self, ImagePrediction};
use crate::session::use_session;

/// The server's image answer (`{label, probabilities: {label: p}}`) in the engine's shape,
/// probabilities in the model's label order; `None` for a regression answer.
pub fn from_server(reply: &api::ImagePrediction, labels: &[String]) -> Option<ImagePrediction> {
    let api::Prediction::Class {
        label,
        probabilities: by_label,
        ..
    } = &reply.prediction
    else {
        return None;
    };
    let labels: Vec<String> = if labels.is_empty() {
        by_label.iter().map(|(l, _)| l.clone()).collect()
    } else {
        labels.to_vec()
    };
    let probabilities = labels
        .iter()
        .map(|l| {
            by_label
                .iter()
                .find(|(name, _)| name == l)
                .map_or(0.0, |&(_, p)| f64::from(p))
        })
        .collect();
    Some(ImagePrediction {
        label: label.clone(),
        probabilities,
        labels,
        warnings: reply.prediction.warnings().to_vec(),
    })
}

/// Classifies an image file's bytes: in the browser while it can, else on the server.
pub async fn classify_bytes(
    info: &ModelInfo,
    bytes: &[u8],
    runner: RwSignal<Runner>,
    csrf: &str,
) -> Result<(ImagePrediction, &'static str), String> {
    if matches!(runner.get_untracked(), Runner::Local { .. }) {
        let result = match engine::inference() {
            Ok(engine) => engine.predict_image(&info.name, bytes).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(p) => return Ok((p, "local")),
            Err(e) => fall_back(runner, e)?,
        }
    }
    let reply = crate::api::predict_image(csrf, &info.name, bytes)
        .await
        .map_err(server_error)?;
    from_server(&reply, &info.labels)
        .map(|p| (p, "server"))
        .ok_or_else(|| "The server's answer could not be understood.".into())
}

/// The most likely label, big, and every label's bar.
pub fn prediction_view(
    label_id: &'static str,
    bars_id: &'static str,
    p: ImagePrediction,
    mode: &'static str,
) -> AnyView {
    let best = p.probabilities.iter().copied().fold(0.0f64, f64::max);
    let ood_id = if label_id == "image-label" {
        "image-ood-warning"
    } else {
        "digit-ood-warning"
    };
    let notice = super::ood::image_notice(ood_id, &p.warnings);
    view! {
        <p class="verdict" id=label_id data-label=p.label.clone() data-mode=mode>
            <span class="verdict-label">{p.label.clone()}</span>
            <span class="muted">{format!(" {:.0}% sure", best * 100.0)}</span>
        </p>
        {notice}
        {probability_bars(bars_id, p.labels, p.probabilities)}
    }
    .into_any()
}

#[component]
pub fn ImagePanel(info: ModelInfo, runner: RwSignal<Runner>) -> impl IntoView {
    let session = use_session();
    let image_url = RwSignal::new(None::<String>);
    let result = RwSignal::new(None::<Result<(ImagePrediction, &'static str), String>>);
    let busy = RwSignal::new(false);
    // Numbers each chosen picture: only the latest one's answer is shown, whatever order the
    // answers arrive in.
    let picked = RwSignal::new(0u64);
    on_cleanup(move || {
        if let Some(url) = image_url.get_untracked() {
            browser::revoke_url(&url);
        }
    });
    let upload_info = info.clone();
    let on_file = move |ev: leptos::ev::Event| {
        let Some(file) = browser::picked_file(&ev) else {
            return;
        };
        if let Some(old) = image_url.get_untracked() {
            browser::revoke_url(&old);
        }
        image_url.set(web_sys::Url::create_object_url_with_blob(&file).ok());
        let info = upload_info.clone();
        busy.set(true);
        result.set(None);
        picked.update(|n| *n += 1);
        let this = picked.get_untracked();
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            let outcome = match browser::read_bytes(&file).await {
                Ok(bytes) => classify_bytes(&info, &bytes, runner, &csrf).await,
                Err(e) => Err(e),
            };
            if picked.get_untracked() == this {
                result.set(Some(outcome));
                busy.set(false);
            }
        });
    };

    view! {
        <div class="columns">
            <section class="card" aria-labelledby="draw-heading">
                <h2 id="draw-heading">"Draw a digit"</h2>
                <DrawDigit info=info.clone() runner/>
            </section>
            <section class="card" aria-labelledby="upload-heading">
                <h2 id="upload-heading">"Or upload a picture"</h2>
                <label for="image-file">"A PNG or JPEG image"</label>
                <input id="image-file" type="file" accept="image/png,image/jpeg" on:change=on_file/>
                <p class="hint">
                    "Light ink on a dark background or dark ink on paper both work; the picture "
                    "is reduced to 28x28 greyscale."
                </p>
                {move || image_url.get().map(|url| view! {
                    <img class="upload-preview" src=url alt="The picture you chose"/>
                })}
                {move || busy.get().then(|| view! { <p role="status">"Classifying…"</p> })}
                {move || result.get().map(|r| match r {
                    Ok((p, mode)) => prediction_view("image-label", "image-probabilities", p, mode),
                    Err(e) => view! { <p class="form-error" id="image-error" role="alert">{e}</p> }.into_any(),
                })}
            </section>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_answers_follow_the_model_label_order() {
        // Parsed from text, as the browser does: the server's label order is kept.
        let reply: api::ImagePrediction = serde_json::from_str(
            r#"{"model_name": "digits", "model_version": "3", "label": "7",
                "probability": 0.75, "probabilities": {"7": 0.75, "1": 0.25}}"#,
        )
        .unwrap();
        let p = from_server(&reply, &["1".into(), "7".into()]).unwrap();
        assert_eq!(p.label, "7");
        assert_eq!(p.probabilities, vec![0.25, 0.75]);
        // Without the model's labels, the server's order.
        assert_eq!(from_server(&reply, &[]).unwrap().labels, ["7", "1"]);
        let value = api::ImagePrediction {
            prediction: api::Prediction::Value {
                value: 1.0,
                warnings: vec![],
            },
            ..reply
        };
        assert!(from_server(&value, &[]).is_none());
    }
}
