//! The CSV half of `/predict`: pick or drop a file, check it and preview its first rows, run
//! the model (browser first, server as the fallback), download the file with predictions.

use leptos::prelude::*;
use leptos_router::components::A;
use send_wrapper::SendWrapper;

use super::{ModelInfo, Runner, fall_back, server_error};
use crate::browser;
use crate::csv_check::{self, CsvPreview, CsvProblem};
use crate::engine;
use crate::session::use_session;

/// A finished prediction.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    url: String,
    file_name: String,
    rows: usize,
    mode: &'static str,
    added: Vec<String>,
    preview: Option<CsvPreview>,
    /// Rows with an out-of-distribution warning.
    warned: usize,
}

/// Runs the model on `csv`: in the browser while it can, else on the server.
async fn predict(
    name: &str,
    csv: &str,
    runner: RwSignal<Runner>,
    csrf: &str,
) -> Result<(String, &'static str, Vec<String>), String> {
    if matches!(runner.get_untracked(), Runner::Local { .. }) {
        let result = match engine::inference() {
            Ok(engine) => engine.predict_csv(name, csv).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(p) => return Ok((p.csv, "local", p.added_columns)),
            Err(e) => fall_back(runner, e)?,
        }
    }
    let out = crate::api::predict_csv(csrf, name, csv)
        .await
        .map_err(server_error)?;
    Ok((out, "server", Vec::new()))
}

#[component]
pub fn CsvPanel(info: ModelInfo, runner: RwSignal<Runner>) -> impl IntoView {
    let session = use_session();
    let file_name = RwSignal::new(String::new());
    let text = RwSignal::new(None::<String>);
    // The picked file itself, for a batch job on the server.
    let picked = RwSignal::new(None::<SendWrapper<web_sys::File>>);
    let checked = RwSignal::new(None::<Result<CsvPreview, CsvProblem>>);
    let read_error = RwSignal::new(None::<String>);
    let outcome = RwSignal::new(None::<Outcome>);
    let dragging = RwSignal::new(false);

    // Revoke the download URL when it is replaced or the page goes away.
    let forget_outcome = move || {
        if let Some(o) = outcome.get_untracked() {
            browser::revoke_url(&o.url);
        }
        outcome.set(None);
    };
    on_cleanup(forget_outcome);

    let expected = info.expected.clone();
    let load = move |file: web_sys::File| {
        let expected = expected.clone();
        forget_outcome();
        read_error.set(None);
        checked.set(None);
        text.set(None);
        file_name.set(file.name());
        picked.set(Some(SendWrapper::new(file.clone())));
        leptos::task::spawn_local(async move {
            match browser::read_text(&file).await {
                Ok(t) => {
                    let expected = (!expected.columns.is_empty()).then_some(&expected);
                    checked.set(Some(csv_check::check(&t, expected)));
                    text.set(Some(t));
                }
                Err(e) => read_error.set(Some(e)),
            }
        });
    };
    let load_dropped = load.clone();

    let name = info.name.clone();
    let run = Action::new_local(move |_: &()| {
        let name = name.clone();
        let csv = text.get_untracked().unwrap_or_default();
        let input_name = file_name.get_untracked();
        let csrf = session.csrf();
        async move {
            let (out, mode, added) = predict(&name, &csv, runner, &csrf).await?;
            let preview = csv_check::check(&out, None).ok();
            let rows = preview.as_ref().map_or(0, |p| p.total_rows);
            let added = if added.is_empty() {
                // The server appends its columns at the end; name them from the header.
                let before = csv_check::check(&csv, None)
                    .map(|p| p.header.len())
                    .unwrap_or(0);
                preview
                    .as_ref()
                    .map(|p| p.header.iter().skip(before).cloned().collect())
                    .unwrap_or_default()
            } else {
                added
            };
            let url = browser::object_url(&out, "text/csv;charset=utf-8")
                .ok_or("The browser could not prepare the download.")?;
            forget_outcome();
            outcome.set(Some(Outcome {
                url,
                file_name: browser::predictions_file_name(&input_name),
                rows,
                mode,
                added,
                preview,
                warned: super::ood::warned_rows(&out),
            }));
            Ok::<(), String>(())
        }
    });

    let ready = move || matches!(checked.get(), Some(Ok(_)));
    let job_model = info.name.clone();
    let job = Action::new_local(move |_: &()| {
        let model = job_model.clone();
        let file = picked.with_untracked(|f| f.as_ref().map(|w| (**w).clone()));
        let csrf = session.csrf();
        async move {
            let file = file.ok_or("Choose a file first.")?;
            crate::api::submit_job(&csrf, &model, &file)
                .await
                .map_err(server_error)
        }
    });
    let columns_hint = {
        let columns = info.expected.columns.clone();
        (!columns.is_empty()).then(|| {
            view! {
                <p class="hint" id="csv-columns">
                    "The model reads the columns "
                    <strong>{columns.join(", ")}</strong>
                    ". Other columns, such as identifiers, are kept as they are; the prediction "
                    "columns are added at the end of the downloaded file (and shown first in the "
                    "preview)."
                </p>
            }
        })
    };

    view! {
        <section class="card" aria-labelledby="csv-heading">
            <h2 id="csv-heading">"Your CSV file"</h2>
            {columns_hint}
            <div
                class="drop-zone"
                class:dragging=move || dragging.get()
                on:dragover=move |ev: leptos::ev::DragEvent| {
                    ev.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=move |ev: leptos::ev::DragEvent| {
                    ev.prevent_default();
                    dragging.set(false);
                    if let Some(file) = browser::dropped_file(&ev) {
                        load_dropped(file);
                    }
                }
            >
                <label for="csv-file">"Drop a CSV file here, or choose one"</label>
                <input
                    id="csv-file"
                    type="file"
                    accept=".csv,.tsv,.txt,text/csv,text/tab-separated-values"
                    aria-describedby="csv-privacy"
                    on:change=move |ev| {
                        if let Some(file) = browser::picked_file(&ev) {
                            load(file);
                        }
                    }
                />
                <p class="hint" id="csv-privacy">
                    "Comma, semicolon or tab separated, with a header line."
                </p>
            </div>
            {move || read_error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
            {move || match checked.get() {
                None => ().into_any(),
                Some(Err(problem)) => view! {
                    <p class="form-error" id="csv-error" role="alert">
                        {format!("{} cannot be used. {problem}", file_name.get())}
                    </p>
                    <p class="hint">"Fix the file and choose it again; nothing was sent."</p>
                }
                .into_any(),
                Some(Ok(preview)) => preview_table("csv-preview", &preview, &[], &file_name.get()),
            }}
            <button
                type="button"
                id="run-csv"
                disabled=move || !ready() || run.pending().get()
                on:click=move |_| {
                    run.dispatch(());
                }
            >
                {move || if run.pending().get() { "Predicting…" } else { "Predict" }}
            </button>
            {move || {
                run.value()
                    .get()
                    .and_then(Result::err)
                    .map(|e| view! { <p class="form-error" id="predict-error" role="alert">{e}</p> })
            }}
            {move || outcome.get().map(result_view)}
            {move || (ready() && session.user().is_some()).then(|| view! {
                <details class="batch">
                    <summary>"A very large file? Run it on the server instead"</summary>
                    <p class="hint">
                        "The file is then uploaded and scored in the background; the result "
                        "waits for you on the History page."
                    </p>
                    <button type="button" class="secondary" id="submit-job"
                        disabled=move || job.pending().get()
                        on:click=move |_| {
                            job.dispatch(());
                        }>
                        "Upload and run as a batch job"
                    </button>
                    {move || job.value().get().map(|r| match r {
                        Ok(j) => {
                            let id = j.id;
                            view! {
                                <p class="ok" id="job-started" role="status">
                                    {format!("Job {id} started. ")}
                                    <A href="/history">"Follow it in your history"</A>
                                </p>
                            }
                            .into_any()
                        }
                        Err(e) => view! { <p class="form-error" role="alert">{e}</p> }.into_any(),
                    })}
                </details>
            })}
        </section>
    }
}

fn result_view(o: Outcome) -> AnyView {
    let where_ = if o.mode == "local" {
        "in your browser"
    } else {
        "on the server"
    };
    let summary = format!(
        "{} row(s) predicted {where_}{}.",
        o.rows,
        if o.added.is_empty() {
            String::new()
        } else {
            format!("; added columns: {}", o.added.join(", "))
        }
    );
    let preview = o.preview.as_ref().map(|p| {
        preview_table(
            "result-preview",
            &added_first(p, &o.added),
            &o.added,
            "The result",
        )
    });
    let help = prediction_help(&o.added);
    view! {
        <div id="predict-result" class="result" data-mode=o.mode data-rows=o.rows role="status">
            <h3>"Predictions"</h3>
            <p>{summary}</p>
            <a id="download-csv" class="button" href=o.url.clone() download=o.file_name.clone()>
                {format!("Download {}", o.file_name)}
            </a>
            {help}
            {super::ood::csv_notice(o.warned, o.rows)}
            {preview}
        </div>
    }
    .into_any()
}

/// What each added column means, for the columns this result has.
fn prediction_help(added: &[String]) -> Option<AnyView> {
    let items: Vec<(String, String)> = added
        .iter()
        .map(|c| (c.clone(), column_meaning(c)))
        .collect();
    (!items.is_empty()).then(|| {
        view! {
            <details class="prediction-help" id="prediction-help" open>
                <summary>"What the prediction columns mean"</summary>
                <dl>
                    {items
                        .into_iter()
                        .map(|(c, m)| view! { <dt>{c}</dt><dd>{m}</dd> })
                        .collect_view()}
                </dl>
            </details>
        }
        .into_any()
    })
}

/// The meaning of one column the model adds (`prediction`, `prediction_probability`,
/// `probability_<label>`, or the predicted value of a regression).
pub fn column_meaning(column: &str) -> String {
    if column == "prediction_probability" {
        "The model's probability (0 to 1) of the label it predicted in this row: how sure it          is of that label, not the probability of any other one."
            .to_string()
    } else if let Some(label) = column.strip_prefix("probability_") {
        format!(
            "The model's probability (0 to 1) that this row is “{label}”; across the              probability columns of a row they add up to 1."
        )
    } else if column.starts_with("prediction") {
        "The label (or, for a number, the value) the model predicts for this row.".to_string()
    } else {
        "Added by the model.".to_string()
    }
}

/// The preview with the columns the model added moved to the front, so the predictions are
/// seen first, without scrolling sideways (the downloaded file keeps them at the end).
fn added_first(p: &CsvPreview, added: &[String]) -> CsvPreview {
    let order: Vec<usize> = (0..p.header.len())
        .filter(|&i| added.contains(&p.header[i]))
        .chain((0..p.header.len()).filter(|&i| !added.contains(&p.header[i])))
        .collect();
    let pick = |row: &Vec<String>| -> Vec<String> {
        order.iter().filter_map(|&i| row.get(i).cloned()).collect()
    };
    CsvPreview {
        delimiter: p.delimiter,
        header: pick(&p.header),
        rows: p.rows.iter().map(pick).collect(),
        total_rows: p.total_rows,
    }
}

/// The first rows of a CSV as a table; `added` columns are highlighted.
fn preview_table(id: &'static str, p: &CsvPreview, added: &[String], what: &str) -> AnyView {
    let caption = if p.total_rows > p.rows.len() {
        format!("{what}: first {} of {} rows", p.rows.len(), p.total_rows)
    } else {
        format!("{what}: {} row(s)", p.total_rows)
    };
    let heads = p
        .header
        .iter()
        .map(|h| {
            let class = if added.contains(h) { "added" } else { "" };
            view! { <th scope="col" class=class>{h.clone()}</th> }
        })
        .collect_view();
    let added_idx: Vec<bool> = p.header.iter().map(|h| added.contains(h)).collect();
    let rows = p
        .rows
        .iter()
        .map(|row| {
            let cells = row
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let class = if added_idx.get(i).copied().unwrap_or(false) {
                        "added"
                    } else {
                        ""
                    };
                    view! { <td class=class>{c.clone()}</td> }
                })
                .collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="table-wrap preview" id=id tabindex="0">
            <table>
                <caption>{caption}</caption>
                <thead><tr>{heads}</tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_columns_come_first_in_the_preview() {
        let p = CsvPreview {
            delimiter: ',',
            header: ["id", "age", "prediction", "prediction_probability"]
                .map(String::from)
                .to_vec(),
            rows: vec![["7", "30", "yes", "0.9"].map(String::from).to_vec()],
            total_rows: 1,
        };
        let added = ["prediction", "prediction_probability"].map(String::from);
        let q = added_first(&p, &added);
        assert_eq!(
            q.header,
            ["prediction", "prediction_probability", "id", "age"]
        );
        assert_eq!(q.rows[0], ["yes", "0.9", "7", "30"]);
        assert_eq!(q.total_rows, 1);
    }

    #[test]
    fn prediction_columns_are_explained() {
        assert!(column_meaning("prediction_probability").contains("label it predicted"));
        assert!(column_meaning("probability_yes").contains("“yes”"));
        assert!(column_meaning("prediction").contains("predicts"));
    }
}
