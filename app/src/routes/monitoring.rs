//! The model page's Monitoring tab (issue #18): is the model still seeing the data it was
//! trained on? The deployment's drift (`GET /api/deployments/{name}/drift`): the verdict and
//! the share of drifted features against the threshold, drift over time (one point per window),
//! every feature's test, score and PSI with the drifted ones first, the worst features'
//! training and served distributions side by side, the predictions against the training labels,
//! members' own checks; the owner's thresholds; and a member's check of its own file, computed
//! in this tab (`b3o_models::monitor` + `drift::compare`: the file never leaves the browser),
//! whose summary it may then contribute.

use leptos::prelude::*;

use crate::api::{
    self, DriftReport, DriftSettings, DriftView, FeatureDrift, ModelPackage, PartnerSummary,
};
use crate::browser;
use crate::charts::{Series, histogram_pair, line_chart, short_number};
use crate::session::use_session;

/// Features shown with their distributions side by side.
const WORST: usize = 3;

#[component]
pub fn Monitoring(
    name: String,
    manage: bool,
    member: bool,
    package: Option<ModelPackage>,
) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let tabular = package.is_some_and(|p| p.spec.preprocessing.is_some());
    let drift = LocalResource::new({
        let name = name.clone();
        move || {
            reload.track();
            let name = name.clone();
            async move { api::drift(&name).await }
        }
    });
    view! {
        <section class="card" aria-labelledby="monitoring-heading" id="monitoring">
            <h2 id="monitoring-heading">"Is it still seeing the data it was trained on?"</h2>
            <p class="hint">
                "Every request this model answers is summarised (counts and histograms per input \
                 column, never the rows) and compared with the training data's summary, which \
                 the members' statistics made. The tests are Evidently's defaults: \
                 Kolmogorov–Smirnov or chi-square on small training sets, normed Wasserstein \
                 or Jensen–Shannon distance on larger ones."
            </p>
            <Transition fallback=|| view! { <p>"Loading the monitoring…"</p> }>
                {move || Suspend::new(async move {
                    match drift.await {
                        Ok(v) => view! { <DriftPanel v reload manage/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        {(member && tabular).then(|| view! { <OwnCheck name=name.clone() reload/> })}
    }
}

#[component]
fn DriftPanel(v: DriftView, reload: RwSignal<u32>, manage: bool) -> impl IntoView {
    if !v.has_reference {
        return view! {
            <p id="drift-none">"This version has no training summary to compare with (it was \
                made before drift monitoring, or is a custom model)."</p>
        }
        .into_any();
    }
    let Some(current) = v.current.clone() else {
        return view! {
            <p id="drift-none">"No request has been answered since this version was deployed."</p>
        }
        .into_any();
    };
    let history: Vec<(f64, f64)> = v
        .history
        .iter()
        .rev()
        .enumerate()
        .map(|(i, p)| ((i + 1) as f64, p.drift_share))
        .collect();
    let threshold: Vec<(f64, f64)> = history
        .iter()
        .map(|&(x, _)| (x, v.settings.drift_share))
        .collect();
    let chart = line_chart(
        "drift-history-chart".into(),
        "Share of drifted features, window by window".into(),
        "window",
        vec![
            Series {
                name: "drifted share".into(),
                points: history,
            },
            Series {
                name: "threshold".into(),
                points: threshold,
            },
        ],
    );
    let mut worst: Vec<&FeatureDrift> = current.features.iter().collect();
    worst.sort_by(|a, b| b.drifted.cmp(&a.drifted).then(b.psi.total_cmp(&a.psi)));
    let pairs = worst
        .iter()
        .take(WORST)
        .map(|f| {
            histogram_pair(
                format!("drift-hist-{}", f.name),
                format!("{}: training data and served", f.name),
                f.histogram.labels.clone(),
                Some(f.histogram.reference.clone()),
                f.histogram.current.clone(),
            )
        })
        .collect_view();
    let predictions = v.predictions.clone().map(|p| {
        let labels = p.drift.as_ref().map(|d| {
            histogram_pair(
                "drift-predictions".into(),
                "Predicted labels against the training labels".into(),
                d.histogram.labels.clone(),
                Some(d.histogram.reference.clone()),
                d.histogram.current.clone(),
            )
        });
        let confidence = (!p.confidence.current.is_empty()).then(|| {
            histogram_pair(
                "drift-confidence".into(),
                "How sure it was (most likely class's probability)".into(),
                p.confidence.labels.clone(),
                None,
                p.confidence.current.clone(),
            )
        });
        let quantiles = (!p.quantiles.is_empty()).then(|| {
            let q: Vec<String> = p.quantiles.iter().map(|v| short_number(*v)).collect();
            view! { <p id="drift-quantiles">{format!("Predicted values, 5th / 50th / 95th percentile: {}", q.join(" / "))}</p> }
        });
        view! { <h3>"Predictions"</h3> {labels} {confidence} {quantiles} }
    });
    let partners = (!v.partners.is_empty()).then(|| {
        let items = v
            .partners
            .iter()
            .map(|p| {
                let drifted = if p.drifted.is_empty() {
                    "no feature drifted".to_string()
                } else {
                    format!("drifted: {}", p.drifted.join(", "))
                };
                view! { <li>{format!("{} ({}, {} rows): {drifted}", p.member, p.at.get(..16).unwrap_or(&p.at), p.rows)}</li> }
            })
            .collect_view();
        view! { <h3>"Members' own checks"</h3> <ul id="drift-partners">{items}</ul> }
    });
    view! {
        {verdict(&current, &v.settings, Some((v.window_secs, v.window_rows)))}
        {chart}
        {feature_table(&current)}
        <div class="columns">{pairs}</div>
        {predictions}
        {partners}
        {manage.then(|| view! { <Thresholds name=v.deployment.clone() settings=v.settings.clone() reload/> })}
    }
    .into_any()
}

/// The verdict in words; `window`: the serving windows' span and rows (none for a file).
fn verdict(r: &DriftReport, s: &DriftSettings, window: Option<(u64, u64)>) -> AnyView {
    let (class, word) = if !r.enough_rows {
        ("tag", "too few rows to judge")
    } else if r.drifting {
        ("tag drifting", "drifting")
    } else {
        ("tag stable", "no drift")
    };
    view! {
        <p class="verdict" id="drift-verdict" data-drifting=r.drifting.to_string()>
            <span class=class>{word}</span>
            {format!(
                " {} of {} features drifted ({:.0}%; the threshold is {:.0}%) in {} rows{}.",
                r.drifted_features,
                r.features.len(),
                r.drift_share * 100.0,
                s.drift_share * 100.0,
                r.rows,
                window.map_or(String::new(), |(secs, rows)| format!(
                    " served lately (windows of {} hours or {rows} rows)",
                    short_number(secs as f64 / 3600.0)
                )),
            )}
        </p>
    }
    .into_any()
}

fn feature_table(r: &DriftReport) -> AnyView {
    let mut features: Vec<&FeatureDrift> = r.features.iter().collect();
    features.sort_by(|a, b| b.drifted.cmp(&a.drifted).then(b.psi.total_cmp(&a.psi)));
    let rows = features
        .into_iter()
        .map(|f| {
            let method = f.method.as_str();
            let unseen = if f.unseen.is_empty() {
                String::new()
            } else {
                f.unseen
                    .iter()
                    .map(|u| format!("{} ({})", u.value, u.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let class = if f.drifted { "drifted" } else { "" };
            view! {
                <tr data-feature=f.name.clone() data-drifted=f.drifted.to_string()>
                    <td class=class>{f.name.clone()}{f.drifted.then_some(" ⚠")}</td>
                    <td>{method}</td>
                    <td>{format!("{} (threshold {})", short_number(f.score), short_number(f.threshold))}</td>
                    <td>{short_number(f.psi)}</td>
                    <td>{format!("{:.1}% → {:.1}%", f.missing_reference * 100.0, f.missing_current * 100.0)}</td>
                    <td>{unseen}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="drift" id="drift-features">
            <thead><tr>
                <th>"Feature"</th><th>"Test"</th><th>"Score"</th><th>"PSI"</th>
                <th>"Missing (training → served)"</th><th>"Categories never seen in training"</th>
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn Thresholds(name: String, settings: DriftSettings, reload: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let share = RwSignal::new(format!("{}", settings.drift_share * 100.0));
    let save = Action::new_local(move |value: &String| {
        let (name, mut settings) = (name.clone(), settings.clone());
        let parsed = value.trim().parse::<f64>();
        async move {
            settings.drift_share =
                parsed.map_err(|_| "the share must be a number".to_string())? / 100.0;
            api::set_drift_settings(&session.csrf(), &name, settings)
                .await
                .map_err(|e| e.to_string())?;
            reload.update(|n| *n += 1);
            Ok::<_, String>(())
        }
    });
    view! {
        <form class="inline" id="drift-thresholds" on:submit=move |ev| {
            ev.prevent_default();
            save.dispatch(share.get_untracked());
        }>
            <label>"Mark as drifting when at least "
                <input type="number" min="0" max="100" step="5" id="drift-share" bind:value=share/>
                "% of the features drifted"</label>
            " "
            <button type="submit">"Save"</button>
            {move || save.value().get().and_then(Result::err).map(|e| view! {
                <p id="drift-thresholds-error" class="form-error" role="alert">{e}</p>
            })}
        </form>
    }
}

/// A member checks a file of its own against the served version, in the browser.
#[component]
fn OwnCheck(name: String, reload: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let report = RwSignal::new(None::<(DriftReport, PartnerSummary, DriftSettings)>);
    let error = RwSignal::new(None::<String>);
    let sent = RwSignal::new(None::<String>);
    let check = {
        let name = name.clone();
        move |ev: web_sys::Event| {
            let Some(file) = browser::picked_file(&ev) else {
                return;
            };
            let name = name.clone();
            leptos::task::spawn_local(async move {
                error.set(None);
                sent.set(None);
                let result = async {
                    let text = browser::read_text(&file).await?;
                    let table = b3o_models::tabular::read_csv(text.as_bytes())
                        .map_err(|e| e.to_string())?;
                    let reference = api::drift_reference(&name)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (r, summary) = b3o_models::monitor::check_table(&reference, &table)?;
                    Ok::<_, String>((
                        r,
                        PartnerSummary {
                            version_id: reference.version_id,
                            summary,
                        },
                        reference.settings,
                    ))
                }
                .await;
                match result {
                    Ok(r) => report.set(Some(r)),
                    Err(e) => error.set(Some(e)),
                }
            });
        }
    };
    let contribute = Action::new_local(move |body: &PartnerSummary| {
        let (name, body) = (name.clone(), body.clone());
        async move {
            let r = api::contribute_drift(&session.csrf(), &name, &body).await;
            match r {
                Ok(_) => {
                    sent.set(Some(
                        "Sent: the summary is listed under the members' own checks.".into(),
                    ));
                    reload.update(|n| *n += 1);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        }
    });
    view! {
        <section class="card" aria-labelledby="own-drift-heading" id="own-drift">
            <h2 id="own-drift-heading">"Check your own new data"</h2>
            <p class="hint">"Pick a CSV: it is summarised and compared in this browser; nothing \
                is sent unless you choose to share the summary (counts and histograms, no rows)."</p>
            <input type="file" accept=".csv,text/csv" id="own-drift-file" on:change=check/>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || report.get().map(|(r, body, settings)| {
                view! {
                    {verdict(&r, &settings, None)}
                    {feature_table(&r)}
                    <button type="button" id="own-drift-share"
                        on:click=move |_| { contribute.dispatch(body.clone()); }>
                        "Share this summary with the group"
                    </button>
                }
            })}
            {move || sent.get().map(|t| view! { <p class="ok" role="status">{t}</p> })}
        </section>
    }
}
