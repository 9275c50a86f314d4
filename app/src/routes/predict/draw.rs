//! The draw-a-digit canvas: pointer input (mouse, touch, pen), a clear button, the 28x28 image
//! the model sees ([`crate::digit`]), and a live prediction while drawing. Predictions are
//! coalesced: while one runs, further strokes only mark the drawing dirty, and the newest
//! drawing is classified next.

use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::{Clamped, JsCast};

use super::image_panel::{classify_bytes, prediction_view};
use super::{ModelInfo, Runner, fall_back};
use crate::browser;
use crate::digit::{self, SIDE};
use crate::engine::{self, ImagePrediction};
use crate::session::use_session;

/// The drawing surface's resolution (CSS may show it smaller on narrow screens).
const CANVAS: u32 = 280;
/// Stroke width in canvas pixels: after scaling to the 20-pixel box, about MNIST's 2 pixels.
const STROKE: f64 = 20.0;
/// At most one live prediction this often while the pointer moves (milliseconds).
const LIVE_INTERVAL_MS: f64 = 80.0;

fn context(canvas: &web_sys::HtmlCanvasElement) -> Option<web_sys::CanvasRenderingContext2d> {
    canvas
        .get_context("2d")
        .ok()??
        .dyn_into::<web_sys::CanvasRenderingContext2d>()
        .ok()
}

fn clear(canvas: &web_sys::HtmlCanvasElement) {
    if let Some(ctx) = context(canvas) {
        ctx.set_fill_style_str("#000");
        ctx.fill_rect(0.0, 0.0, canvas.width() as f64, canvas.height() as f64);
    }
}

/// The pointer's position in canvas pixels.
fn position(canvas: &web_sys::HtmlCanvasElement, ev: &web_sys::PointerEvent) -> (f64, f64) {
    let rect = canvas.get_bounding_client_rect();
    let sx = canvas.width() as f64 / rect.width().max(1.0);
    let sy = canvas.height() as f64 / rect.height().max(1.0);
    (
        (ev.client_x() as f64 - rect.left()) * sx,
        (ev.client_y() as f64 - rect.top()) * sy,
    )
}

fn stroke(canvas: &web_sys::HtmlCanvasElement, from: (f64, f64), to: (f64, f64)) {
    if let Some(ctx) = context(canvas) {
        ctx.set_stroke_style_str("#fff");
        ctx.set_line_width(STROKE);
        ctx.set_line_cap("round");
        ctx.set_line_join("round");
        ctx.begin_path();
        ctx.move_to(from.0, from.1);
        ctx.line_to(to.0, to.1);
        ctx.stroke();
    }
}

/// The drawing as the model's 784 inputs, or `None` when the canvas is blank.
fn pixels(canvas: &web_sys::HtmlCanvasElement) -> Option<Vec<f32>> {
    let (w, h) = (canvas.width(), canvas.height());
    let data = context(canvas)?
        .get_image_data(0.0, 0.0, w as f64, h as f64)
        .ok()?
        .data();
    digit::mnist_pixels(&data, w as usize, h as usize)
}

/// Shows `pixels` (28x28, or blank) on the small preview canvas.
fn show_preview(preview: &web_sys::HtmlCanvasElement, pixels: Option<&[f32]>) {
    let Some(ctx) = context(preview) else {
        return;
    };
    let mut rgba = vec![0u8; SIDE * SIDE * 4];
    for (i, px) in rgba.chunks_exact_mut(4).enumerate() {
        let v = pixels.map_or(0, |p| (p[i].clamp(0.0, 1.0) * 255.0).round() as u8);
        px.copy_from_slice(&[v, v, v, 255]);
    }
    if let Ok(image) = web_sys::ImageData::new_with_u8_clamped_array_and_sh(
        Clamped(&rgba),
        SIDE as u32,
        SIDE as u32,
    ) {
        let _ = ctx.put_image_data(&image, 0.0, 0.0);
    }
}

/// Classifies the drawing: the engine takes the pixels directly; the server gets the 28x28
/// preview as a PNG (its own preprocessing then leaves it as it is).
async fn classify(
    info: &ModelInfo,
    pixels: &[f32],
    preview: Option<web_sys::HtmlCanvasElement>,
    runner: RwSignal<Runner>,
    csrf: &str,
) -> Result<(ImagePrediction, &'static str), String> {
    if matches!(runner.get_untracked(), Runner::Local { .. }) {
        let result = match engine::inference() {
            Ok(engine) => engine.predict_pixels(&info.name, pixels).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(p) => return Ok((p, "local")),
            Err(e) => fall_back(runner, e)?,
        }
    }
    let png = preview
        .and_then(|c| c.to_data_url().ok())
        .and_then(|url| browser::data_url_bytes(&url))
        .ok_or("The drawing could not be turned into an image.")?;
    classify_bytes(info, &png, runner, csrf).await
}

#[component]
pub fn DrawDigit(info: ModelInfo, runner: RwSignal<Runner>) -> impl IntoView {
    let session = use_session();
    let canvas: NodeRef<html::Canvas> = NodeRef::new();
    let preview: NodeRef<html::Canvas> = NodeRef::new();
    let last = StoredValue::new(None::<(f64, f64)>);
    let busy = StoredValue::new(false);
    let dirty = StoredValue::new(false);
    let last_live = StoredValue::new(0.0f64);
    let result = RwSignal::new(None::<Result<(ImagePrediction, &'static str), String>>);
    let info = StoredValue::new(info);

    Effect::new(move |_| {
        if let Some(c) = canvas.get() {
            clear(&c);
        }
        if let Some(p) = preview.get() {
            show_preview(&p, None);
        }
    });

    // Classifies the newest drawing, then again while strokes arrived meanwhile.
    let request = move || {
        if busy.get_value() {
            dirty.set_value(true);
            return;
        }
        busy.set_value(true);
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            loop {
                dirty.set_value(false);
                let Some(c) = canvas.get_untracked() else {
                    break;
                };
                let px = pixels(&c);
                let small = preview.get_untracked();
                if let Some(p) = &small {
                    show_preview(p, px.as_deref());
                }
                match px {
                    None => result.set(None),
                    Some(px) => {
                        let info = info.get_value();
                        let outcome = classify(&info, &px, small, runner, &csrf).await;
                        result.set(Some(outcome));
                    }
                }
                if !dirty.get_value() {
                    break;
                }
            }
            busy.set_value(false);
        });
    };

    let down = move |ev: leptos::ev::PointerEvent| {
        let Some(c) = canvas.get_untracked() else {
            return;
        };
        ev.prevent_default();
        let _ = c.set_pointer_capture(ev.pointer_id());
        let p = position(&c, &ev);
        stroke(&c, p, p);
        last.set_value(Some(p));
    };
    let moved = move |ev: leptos::ev::PointerEvent| {
        let (Some(c), Some(from)) = (canvas.get_untracked(), last.get_value()) else {
            return;
        };
        ev.prevent_default();
        let p = position(&c, &ev);
        stroke(&c, from, p);
        last.set_value(Some(p));
        let now = js_sys::Date::now();
        if now - last_live.get_value() >= LIVE_INTERVAL_MS {
            last_live.set_value(now);
            request();
        }
    };
    let up = move |_: leptos::ev::PointerEvent| {
        if last.get_value().is_some() {
            last.set_value(None);
            request();
        }
    };
    let clear_all = move |_| {
        if let Some(c) = canvas.get_untracked() {
            clear(&c);
        }
        if let Some(p) = preview.get_untracked() {
            show_preview(&p, None);
        }
        result.set(None);
    };

    view! {
        <p class="hint" id="draw-help">
            "Draw one digit with the mouse, a finger or a pen; the model's guess updates as you "
            "draw. Keyboard users can upload a picture instead."
        </p>
        <div class="draw-area">
            <canvas
                id="digit-canvas"
                node_ref=canvas
                width=CANVAS
                height=CANVAS
                role="img"
                aria-label="Drawing area for a digit"
                aria-describedby="draw-help"
                on:pointerdown=down
                on:pointermove=moved
                on:pointerup=up
                on:pointercancel=up
            ></canvas>
            <div class="draw-side">
                <canvas id="digit-preview" node_ref=preview width=SIDE as u32 height=SIDE as u32
                    aria-hidden="true" title="What the model sees (28x28)"></canvas>
                <span class="hint">"What the model sees"</span>
                <button type="button" id="clear-canvas" class="secondary" on:click=clear_all>
                    "Clear"
                </button>
            </div>
        </div>
        <div aria-live="polite">
            {move || result.get().map(|r| match r {
                Ok((p, mode)) => prediction_view("digit-label", "digit-probabilities", p, mode),
                Err(e) => view! { <p class="form-error" id="digit-error" role="alert">{e}</p> }.into_any(),
            })}
        </div>
    }
}
