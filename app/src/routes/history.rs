//! `/history`: what the account did. Federated runs (`GET /api/history/runs`: every group it
//! owns or joined, each round's outcome and metrics, the final model to download) and batch
//! inference jobs (`GET /api/jobs`: status, progress, the result CSV to download).

use leptos::prelude::*;
use leptos_router::components::A;

use super::show_errors;
use crate::api;
use crate::charts::{is_loss, is_quality, line_chart, series_by_metric};
use crate::session::{SessionState, use_session};

#[component]
pub fn History() -> impl IntoView {
    let session = use_session();
    let signed_in = Memo::new(move |_| match session.state() {
        SessionState::Checking => None,
        SessionState::SignedOut => Some(false),
        SessionState::SignedIn(_) => Some(true),
    });
    view! {
        <h1>"History"</h1>
        {move || match signed_in.get() {
            None => view! { <p>"Loading…"</p> }.into_any(),
            Some(false) => view! {
                <p class="empty">
                    <A href="/sign-in">"Sign in"</A>
                    " to see your training runs and inference jobs."
                </p>
            }
            .into_any(),
            Some(true) => view! { <Runs/> <Jobs/> }.into_any(),
        }}
    }
}

#[component]
fn Runs() -> impl IntoView {
    let runs = LocalResource::new(api::history_runs);
    view! {
        <section aria-labelledby="runs-heading">
            <h2 id="runs-heading">"Federated training runs"</h2>
            <Transition fallback=|| view! { <p>"Loading your runs…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move {
                        runs.await.map(|list| {
                            if list.is_empty() {
                                return view! {
                                    <p class="empty" id="runs-empty">
                                        "No run yet. " <A href="/groups">"Create or join a group"</A>
                                        " to train a model with others."
                                    </p>
                                }
                                .into_any();
                            }
                            view! {
                                <ul class="runs" id="run-list">
                                    {list.into_iter().map(run_view).collect_view()}
                                </ul>
                            }
                            .into_any()
                        })
                    })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

fn run_view(run: api::Run) -> impl IntoView {
    let group_id = run.group_id;
    let closed: Vec<&api::RunRound> = run
        .rounds
        .iter()
        .filter(|r| r.state == api::RoundState::Closed)
        .collect();
    let fit: Vec<(f64, Option<&api::Metrics>)> = closed
        .iter()
        .map(|r| (r.round as f64, r.metrics.as_ref()))
        .collect();
    let eval: Vec<(f64, Option<&api::Metrics>)> = closed
        .iter()
        .map(|r| (r.round as f64, r.evaluation.as_ref()))
        .collect();
    let mut series = series_by_metric(&fit, "training ", |n| is_loss(n) || is_quality(n));
    series.extend(series_by_metric(&eval, "evaluation ", |n| {
        is_loss(n) || is_quality(n)
    }));
    let finished = run.finished;
    let download = run.latest_version.as_ref().map(|latest| {
        let weights = latest.downloads.weights.clone();
        let onnx = latest.downloads.onnx.clone();
        let label = if finished {
            "Final model"
        } else {
            "Latest model"
        };
        view! {
            <p class="downloads">
                <strong>{format!("{label}: version {} (round {})", latest.id, latest.round)}</strong>
                " "
                <a href=weights download="" class="download-weights">"weights (safetensors)"</a>
                {onnx.map(|u| view! { " · " <a href=u download="" class="download-onnx">"ONNX"</a> })}
            </p>
        }
    });
    let href = format!("/groups/{group_id}");
    let anchor = format!("group-{group_id}");
    let summary = format!(
        "{} · {} of {} round(s) closed · you contributed to {} · {}",
        run.role.map_or("", api::GroupRole::as_str),
        closed.len(),
        run.total_rounds,
        run.rounds_contributed,
        run.phase.as_str().replace('_', " "),
    );
    let chart_id = format!("run-chart-{group_id}");
    view! {
        <li class="card run" id=anchor data-group-id=group_id data-finished=finished.to_string()>
            <h3><A href=href>{run.name.clone()}</A></h3>
            <p class="muted">{summary}</p>
            {download}
            {(!series.is_empty()).then(|| line_chart(chart_id, "Metrics by round".into(), "round", series))}
        </li>
    }
}

#[component]
fn Jobs() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let jobs = LocalResource::new(move || {
        reload.track();
        api::jobs()
    });
    // While a job is queued or running, look again every 2 s (the table keeps showing the
    // last answer meanwhile).
    if let Ok(handle) = set_interval_with_handle(
        move || {
            let pending = jobs.with_untracked(
                |r| matches!(r, Some(Ok(list)) if list.iter().any(|j| !j.status.is_final())),
            );
            if pending {
                reload.update(|n| *n += 1);
            }
        },
        std::time::Duration::from_secs(2),
    ) {
        on_cleanup(move || handle.clear());
    }
    view! {
        <section aria-labelledby="jobs-heading">
            <h2 id="jobs-heading">"Inference jobs"</h2>
            <p class="muted">
                "Large files scored on the server in the background. Predictions made in your "
                "browser on the " <A href="/predict">"Predict"</A> " page are not recorded here: "
                "they never leave your computer."
            </p>
            <button type="button" class="secondary" on:click=move |_| reload.update(|n| *n += 1)>
                "Refresh"
            </button>
            <Transition fallback=|| view! { <p>"Loading your jobs…"</p> }>
                {move || Suspend::new(async move {
                    match jobs.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty" id="jobs-empty">"No inference job yet."</p>
                        }
                        .into_any(),
                        Ok(list) => job_table(list),
                        Err(e) if e.status() == Some(404) => view! {
                            <p class="empty">"This server does not run batch jobs."</p>
                        }
                        .into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn job_table(list: Vec<api::Job>) -> AnyView {
    let rows = list
        .into_iter()
        .map(|j| {
            let id = j.id.to_string();
            let status = j.status.as_str();
            let progress = format!("{:.0}%", j.progress * 100.0);
            let done = j.status == api::JobStatus::Succeeded;
            let result = j
                .result_url
                .clone()
                .unwrap_or_else(|| format!("/api/jobs/{id}/result"));
            let error = j.error.clone().unwrap_or_default();
            let started = j.created_at.get(..16).unwrap_or(&j.created_at).replace('T', " ");
            view! {
                <tr data-job=id.clone() data-status=status>
                    <td>{id.clone()}</td>
                    <td>{j.model.clone()}</td>
                    <td>{j.input_name.clone()}</td>
                    <td>{status}{(!error.is_empty()).then(|| format!(": {error}"))}</td>
                    <td>{progress}</td>
                    <td>{started}</td>
                    <td>
                        {done.then(|| view! { <a href=result download="" class="job-result">"Download result"</a> })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table id="job-table">
                <thead>
                    <tr>
                        <th scope="col">"Job"</th>
                        <th scope="col">"Model"</th>
                        <th scope="col">"File"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Progress"</th>
                        <th scope="col">"Started"</th>
                        <th scope="col"><span class="visually-hidden">"Result"</span></th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
