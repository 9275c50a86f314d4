//! `/groups/{id}`: one group. Its description and settings, its members and where they stand
//! (connected, training with progress, sent, gone), the owner's join code, start button and
//! controls (pause, resume, cancel, close the round now, remove a member) with the round's
//! deadline counting down, rounds as they happen (Server-Sent Events from
//! `/api/groups/{id}/events`, with a slow poll as a safety net), loss and accuracy by round,
//! the model versions with promotion to a deployment, and the member's own training panel.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;

use super::training::TrainPanel;
use crate::api::{self, GroupExt, MemberStatus, Metrics, RoundState, RoundView, VersionView};
use crate::charts::{
    Series, is_loss, is_quality, line_chart, metric_text, series_by_metric, short_number,
};
use crate::metrics::MetricSource;
use crate::routes::{form_error, show_errors};
use crate::session::use_session;
use b3o_models::dp::{DpParams, DpPlacement};
use b3o_models::protocol::{GroupPrivacy, VersionPrivacy};

#[component]
pub fn GroupPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params
            .with(|p| p.get("id"))
            .and_then(|s| s.parse::<i64>().ok())
    });
    move || match id.get() {
        Some(id) => view! { <GroupView id/> }.into_any(),
        None => view! {
            <p class="form-error" role="alert">"This is not the address of a group."</p>
        }
        .into_any(),
    }
}

/// Connection state of the live events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Connecting,
    Connected,
    Reconnecting,
    Unavailable,
}

/// Every event of the group stream bumps `reload` (members' presence and progress only
/// `members`: the group is read again, not its rounds and versions); the stream reconnects by
/// itself.
fn subscribe(group_id: i64, reload: RwSignal<u32>, members: RwSignal<u32>, live: RwSignal<Live>) {
    let Ok(source) = web_sys::EventSource::new(&format!("/api/groups/{group_id}/events")) else {
        live.set(Live::Unavailable);
        return;
    };
    let on_event = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        live.set(Live::Connected);
        reload.update(|n| *n += 1);
    });
    for name in [
        "snapshot",
        "phase_changed",
        "round_opened",
        "round_closed",
        "round_failed",
        "member_joined",
        "member_ready",
        "member_left",
        "update_received",
        "paused",
        "lagged",
        "message",
    ] {
        let _ = source.add_event_listener_with_callback(name, on_event.as_ref().unchecked_ref());
    }
    let on_member = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        live.set(Live::Connected);
        members.update(|n| *n += 1);
    });
    for name in ["member_presence", "member_progress"] {
        let _ = source.add_event_listener_with_callback(name, on_member.as_ref().unchecked_ref());
    }
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        live.set(Live::Reconnecting);
    });
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let keep = SendWrapper::new((source, on_event, on_member, on_error));
    on_cleanup(move || {
        let (source, _, _, _) = keep.take();
        source.close();
    });
}

#[component]
fn GroupView(id: i64) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let members = RwSignal::new(0u32);
    let live = RwSignal::new(Live::Connecting);
    let group = LocalResource::new(move || {
        reload.track();
        members.track();
        api::group(id)
    });
    let rounds = LocalResource::new(move || {
        reload.track();
        api::rounds(id)
    });
    let versions = LocalResource::new(move || {
        reload.track();
        api::versions(id)
    });
    subscribe(id, reload, members, live);
    // Readiness changes send no event: look again now and then.
    if let Ok(handle) =
        set_interval_with_handle(move || reload.update(|n| *n += 1), Duration::from_secs(5))
    {
        on_cleanup(move || handle.clear());
    }

    let latest = Memo::new(move |_| group.get().and_then(Result::ok));
    // What decides the page's layout; changes rarely, so the panels keep their state.
    let shape = Memo::new(move |_| {
        latest.get().map(|g| {
            (
                api::model_kind_name(g.model.kind()).to_string(),
                g.target(),
                g.can_train(),
                g.can_manage(),
                g.dp.as_ref().map(|d| (d.params.epsilon, d.params.delta)),
            )
        })
    });

    view! {
        {move || {
            group.get().and_then(Result::err).filter(|_| latest.get().is_none()).map(|e| {
                view! { <p class="form-error" id="group-error" role="alert">{e.to_string()}</p> }
            })
        }}
        {move || {
            if latest.with(Option::is_none) && group.get().is_none() {
                Some(view! { <p role="status">"Loading the group…"</p> })
            } else {
                None
            }
        }}
        {move || latest.get().map(|g| view! { <Header g live=live.get()/> })}
        {move || shape.get().map(|(kind, target, can_train, can_manage, dp)| {
            view! {
                {can_train.then(|| view! { <KeptUpdate id reload/> })}
                {can_manage.then(|| view! { <OwnerPanel id latest reload/> })}
                <Progress id latest rounds can_manage reload/>
                {can_train.then(|| view! { <TrainPanel group_id=id kind=kind.clone() target=target.clone() dp/> })}
                {(can_train && !can_manage).then(|| view! { <Leave id/> })}
                <Charts rounds/>
                <Privacy latest rounds/>
                <Versions id latest versions can_manage/>
            }
        })}
    }
}

/// An update this browser kept when the page closed before sending it: sent now if its round
/// (or the asynchronous buffer) still takes it, else dropped; either way the member is told.
#[component]
fn KeptUpdate(id: i64, reload: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let message = RwSignal::new(None::<(bool, String)>);
    if crate::browser::has_kept(id) {
        leptos::task::spawn_local(async move {
            let outcome = match crate::engine::Training::spawn() {
                Ok(worker) => worker.upload_kept(id, &session.csrf()).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(outcome) => {
                    crate::browser::clear_kept(id);
                    let ok = !matches!(outcome, crate::engine::KeptOutcome::Discarded { .. });
                    message.set(outcome.message().map(|m| (ok, m)));
                    reload.update(|n| *n += 1);
                }
                Err(e) => message.set(Some((
                    false,
                    format!(
                        "An update kept in this browser from an earlier visit could not be sent \
                         yet ({e}); it is kept, and sent at your next visit or when you train."
                    ),
                ))),
            }
        });
    }
    move || {
        message.get().map(|(ok, text)| {
            view! {
                <p id="kept-update" class=if ok { "notice" } else { "form-error" } role="status"
                    data-outcome=if ok { "uploaded" } else { "discarded" }>{text}</p>
            }
        })
    }
}

#[component]
fn Header(g: api::GroupView, live: Live) -> impl IntoView {
    let live_text = match live {
        Live::Connecting => "connecting…",
        Live::Connected => "live",
        Live::Reconnecting => "reconnecting…",
        Live::Unavailable => "not live: reload to update",
    };
    let kind = match g.model.kind() {
        api::ModelKind::Tabular => format!(
            "Table model{}",
            g.target()
                .map(|t| format!(" predicting “{t}”"))
                .unwrap_or_default()
        ),
        api::ModelKind::ImageCnn => "Image classifier".to_string(),
        api::ModelKind::Custom => "Custom model".to_string(),
    };
    let h = &g.hyperparameters;
    let settings = format!(
        "{} round(s) · {} local epoch(s) · batch {} · {} (lr {}) · strategy {} · at least {} member(s) per round · updates {}",
        g.rounds,
        h.local_epochs,
        h.batch_size,
        api::optimizer_name(h.optimizer),
        h.lr,
        g.strategy_name(),
        g.min_clients,
        g.update_encoding,
    );
    let encoding = format!(
        "Update compression: {} ({}). {}",
        super::encoding_name(&g.update_encoding),
        g.update_encoding,
        g.update_encoding.explanation()
    );
    view! {
        <p class="crumbs"><A href="/groups">"Groups"</A> " / "</p>
        <h1 id="group-name">
            {g.name.clone()} " " <span class="tag" id="group-role">{g.role_name()}</span>
            {g.secagg.is_some().then(|| view! {
                " " <span class="tag" id="group-secure"
                    title="SecAgg+: the server only learns the sum of each round's updates">
                    "secure aggregation"
                </span>
            })}
            {g.dp.as_ref().map(|dp| {
                let p = &dp.params;
                view! {
                    " " <span class="tag" id="group-dp" title=dp_title(p)
                        data-epsilon=p.epsilon.to_string() data-delta=p.delta.to_string()
                        data-placement=p.placement.as_str()
                        data-noise-multiplier=p.noise_multiplier.to_string()
                        data-clipping-norm=dp.clipping_norm.to_string()>
                        "differential privacy"
                    </span>
                }
            })}
        </h1>
        {(!g.description.is_empty()).then(|| view! { <p class="lead">{g.description.clone()}</p> })}
        <p class="muted">{kind} " · " {settings}</p>
        <p class="muted" id="group-update-encoding" data-encoding=g.update_encoding.to_string()>
            {encoding}
        </p>
        {g.dp.as_ref().map(|dp| view! {
            <p class="muted" id="group-dp-settings">{dp_settings_text(dp)}</p>
        })}
        <p class="muted">
            "Phase: "
            <strong id="group-phase" data-phase=g.phase.as_str() data-paused=g.paused.to_string()
                data-cancelled=g.cancelled.to_string()>
                {phase_words(&g)}
            </strong>
            " · "
            <span class="live" data-live=live_text>{live_text}</span>
        </p>
    }
}

/// The DP tag's tooltip.
fn dp_title(p: &DpParams) -> String {
    format!(
        "Differential privacy: no model version reveals much more about any one partner's rows \
         than a model trained without them (ε {}, δ {:e})",
        short_number(p.epsilon),
        p.delta
    )
}

/// Who adds the noise, in words.
pub(crate) fn placement_words(placement: DpPlacement) -> &'static str {
    match placement {
        DpPlacement::Central => "central noise (members clip, the server adds the noise)",
        DpPlacement::Local => "local noise (each member adds it before its update leaves)",
    }
}

/// "Differential privacy: target ε 8, δ 1e-5 · central noise (...) · noise multiplier 0.62 ·
/// clipping norm 1 (adaptive)".
fn dp_settings_text(dp: &GroupPrivacy) -> String {
    let p = &dp.params;
    format!(
        "Differential privacy: target ε {}, δ {:e} · {} · noise multiplier {} · clipping norm \
         {}{} · {} round(s) planned",
        short_number(p.epsilon),
        p.delta,
        placement_words(p.placement),
        short_number(p.noise_multiplier),
        short_number(dp.clipping_norm),
        if p.adaptive.is_some() {
            " (adaptive)"
        } else {
            ""
        },
        p.planned_rounds,
    )
}

/// The phase as the page says it: paused and cancelled training included.
fn phase_words(g: &api::GroupView) -> String {
    let phase = g.phase.as_str().replace('_', " ");
    if g.cancelled {
        format!("{phase} (training was cancelled)")
    } else if g.paused && g.phase == api::Phase::Training {
        "training, paused by the owner".to_string()
    } else {
        phase
    }
}

/// Seconds from now until an RFC 3339 time (negative once it passed).
fn seconds_until(deadline: &str) -> Option<i64> {
    let at = js_sys::Date::parse(deadline);
    if at.is_nan() {
        return None;
    }
    Some(((at - js_sys::Date::now()) / 1000.0).round() as i64)
}

/// `"4 min 05 s"`.
fn countdown_text(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// Copies `text` to the clipboard; `copied` says so for a moment.
fn copy_to_clipboard(text: String, copied: RwSignal<bool>) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(&text);
        copied.set(true);
        set_timeout(move || copied.set(false), Duration::from_secs(2));
    }
}

#[component]
fn OwnerPanel(
    id: i64,
    latest: Memo<Option<api::GroupView>>,
    reload: RwSignal<u32>,
) -> impl IntoView {
    let session = use_session();
    let start = Action::new_local(move |_: &()| async move {
        let r = api::start_group(&session.csrf(), id).await;
        reload.update(|n| *n += 1);
        r
    });
    let can_start = move || {
        latest.with(|g| {
            g.as_ref()
                .is_some_and(|g| matches!(g.phase, api::Phase::Enrolling | api::Phase::Statistics))
        })
    };
    let control = Action::new_local(move |action: &&'static str| {
        let action = *action;
        async move {
            let r = api::control_group(&session.csrf(), id, action).await;
            reload.update(|n| *n += 1);
            r
        }
    });
    let confirm_cancel = RwSignal::new(false);
    let copied = RwSignal::new(false);
    // A tick a second for the deadline's countdown.
    let now = RwSignal::new(0u32);
    if let Ok(handle) =
        set_interval_with_handle(move || now.update(|n| *n += 1), Duration::from_secs(1))
    {
        on_cleanup(move || handle.clear());
    }
    // Changes only when the round, its deadline or the pause do: the buttons are not rebuilt
    // by every reload of the group (members' progress), nor by the countdown's tick.
    let training = Memo::new(move |_| {
        latest.with(|g| {
            g.as_ref()
                .filter(|g| g.phase == api::Phase::Training)
                .map(|g| {
                    (
                        g.paused,
                        g.current_round,
                        g.current_round_deadline_at.clone(),
                    )
                })
        })
    });
    let join_code =
        Memo::new(move |_| latest.with(|g| g.as_ref().and_then(|g| g.join_code.clone())));
    view! {
        <section class="card owner" aria-labelledby="owner-heading">
            <h2 id="owner-heading">"You manage this group"</h2>
            {move || join_code.get().map(|code| {
                let copy = code.clone();
                view! {
                    <p>
                        "Invite members with the join code "
                        <code class="big" id="join-code-value">{code}</code>
                        " "
                        <button type="button" class="secondary small" id="copy-join-code"
                            on:click=move |_| copy_to_clipboard(copy.clone(), copied)>
                            {move || if copied.get() { "Copied" } else { "Copy" }}
                        </button>
                        " They enter it on the Groups page."
                    </p>
                }
            })}
            {move || training.get().map(|(paused, round, deadline)| {
                let has_deadline = deadline.is_some();
                let countdown = move || {
                    now.track();
                    let left = deadline.as_deref().and_then(seconds_until);
                    match (round, left) {
                        (Some(r), Some(s)) => view! {
                            <p id="round-deadline" data-round=r data-seconds=s.max(0)>
                                {format!(
                                    "Round {r} takes updates for {} more; then it closes with \
                                     what arrived, if enough did.",
                                    countdown_text(s)
                                )}
                            </p>
                        }.into_any(),
                        _ if paused => view! {
                            <p id="round-deadline">"Paused: no round is open."</p>
                        }.into_any(),
                        _ => view! {
                            <p id="round-deadline">"The round is being aggregated…"</p>
                        }.into_any(),
                    }
                };
                view! {
                    <div class="controls" id="training-controls">
                        {countdown}
                        <p class="hint">
                            "Close the round now to aggregate the updates that arrived (at least "
                            "the minimum per round); pause to let the open round finish and open "
                            "no new one; cancel to end training (versions stay)."
                        </p>
                        <div class="button-row">
                            <button type="button" id="close-round" class="secondary"
                                disabled=move || control.pending().get() || !has_deadline
                                on:click=move |_| {
                                    control.dispatch("rounds/current/close");
                                }>
                                "Close the round now"
                            </button>
                            {if paused {
                                view! {
                                    <button type="button" id="resume-training" class="secondary"
                                        disabled=move || control.pending().get()
                                        on:click=move |_| {
                                            control.dispatch("resume");
                                        }>
                                        "Resume training"
                                    </button>
                                }.into_any()
                            } else {
                                view! {
                                    <button type="button" id="pause-training" class="secondary"
                                        disabled=move || control.pending().get()
                                        on:click=move |_| {
                                            control.dispatch("pause");
                                        }>
                                        "Pause training"
                                    </button>
                                }.into_any()
                            }}
                            <button type="button" id="cancel-training" class="danger"
                                disabled=move || control.pending().get()
                                on:click=move |_| confirm_cancel.set(true)>
                                "Cancel training…"
                            </button>
                        </div>
                        {move || confirm_cancel.get().then(|| view! {
                            <p class="confirm" role="alert">
                                "Cancel training for every member? The open round is dropped; "
                                "versions already made stay and can be deployed. "
                                <button type="button" id="cancel-training-confirm" class="danger"
                                    on:click=move |_| {
                                        confirm_cancel.set(false);
                                        control.dispatch("cancel");
                                    }>
                                    "Yes, cancel training"
                                </button>
                                " "
                                <button type="button" class="secondary"
                                    on:click=move |_| confirm_cancel.set(false)>
                                    "Keep training"
                                </button>
                            </p>
                        })}
                    </div>
                }
            })}
            {form_error("control-error", control.value())}
            {move || can_start().then(|| view! {
                <p class="hint">
                    "Start training when enough members are ready (they picked their data on "
                    "this page). Each round then waits for them."
                </p>
                <button type="button" id="start-training" disabled=move || start.pending().get()
                    on:click=move |_| {
                        start.dispatch(());
                    }>
                    "Start training"
                </button>
            })}
            {form_error("start-error", start.value())}
        </section>
    }
}

/// Members, readiness and the rounds so far; the owner can remove a member.
#[component]
fn Progress(
    id: i64,
    latest: Memo<Option<api::GroupView>>,
    rounds: LocalResource<Result<Vec<RoundView>, api::ApiError>>,
    can_manage: bool,
    reload: RwSignal<u32>,
) -> impl IntoView {
    let session = use_session();
    let removing = RwSignal::new(None::<i64>);
    let remove = Action::new_local(move |member_id: &i64| {
        let member_id = *member_id;
        async move {
            let r = api::remove_member(&session.csrf(), id, member_id).await;
            removing.set(None);
            reload.update(|n| *n += 1);
            r
        }
    });
    let members = move || {
        latest.get().map(|g| {
            let count = g.members;
            let summary = format!(
                "{count} member(s), {} ready to train (at least {} needed per round).",
                g.ready_members, g.min_clients
            );
            let me = g.member_id;
            let list = (!g.member_list.is_empty()).then_some(g.member_list);
            view! {
                <p id="group-members" data-members=count data-ready=g.ready_members>{summary}</p>
                {list.map(|members| view! {
                    <ul class="members" id="member-list" aria-label="Members and where they stand">
                        {members.into_iter().map(|m| {
                            let (state, label) = member_state(&m);
                            let owner = m.role == api::MemberRole::Owner;
                            let who = match (owner, me == Some(m.member_id)) {
                                (true, true) => " (owner, you)",
                                (true, false) => " (owner)",
                                (false, true) => " (you)",
                                (false, false) => "",
                            };
                            let member_id = m.member_id;
                            let name = m.name.clone();
                            let removable = can_manage && !owner && !m.left;
                            let presence = m.presence.map_or("unknown", api::Presence::as_str);
                            let progress = m.progress.map(|p| format!("{:.0}", p * 100.0));
                            view! {
                                <li data-state=state data-member=m.member_id data-presence=presence
                                    data-progress=progress>
                                    <span>{m.name.clone()}{who}</span>
                                    ": "
                                    <span class=format!("tag state-{state}")>{label}</span>
                                    {removable.then(|| view! {
                                        " "
                                        <button type="button" class="secondary small remove-member"
                                            data-member=member_id
                                            on:click=move |_| removing.set(Some(member_id))>
                                            "Remove"
                                        </button>
                                        {move || (removing.get() == Some(member_id)).then(|| {
                                            let name = name.clone();
                                            view! {
                                                <span class="confirm" role="alert">
                                                    {format!(" Remove {name}? It is no longer asked to train and its calls are refused. ")}
                                                    <button type="button" class="danger small remove-member-confirm"
                                                        data-member=member_id
                                                        disabled=move || remove.pending().get()
                                                        on:click=move |_| {
                                                            remove.dispatch(member_id);
                                                        }>
                                                        "Yes, remove"
                                                    </button>
                                                    " "
                                                    <button type="button" class="secondary small"
                                                        on:click=move |_| removing.set(None)>
                                                        "No"
                                                    </button>
                                                </span>
                                            }
                                        })}
                                    })}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                })}
            }
        })
    };
    let round_view = move || {
        let list = rounds.get().and_then(Result::ok).unwrap_or_default();
        let names: std::collections::BTreeMap<i64, String> = latest.with(|g| {
            g.as_ref()
                .map(|g| {
                    g.member_list
                        .iter()
                        .map(|m| (m.member_id, m.name.clone()))
                        .collect()
                })
                .unwrap_or_default()
        });
        let total = latest.with(|g| g.as_ref().map_or(0, |g| g.rounds));
        let closed = list
            .iter()
            .filter(|r| r.state == RoundState::Closed)
            .count() as i64;
        let current = list.last().cloned();
        view! {
            <label for="rounds-progress">{format!("Rounds completed: {closed} of {total}")}</label>
            <progress id="rounds-progress" max=total.max(1) value=closed data-closed=closed>
                {format!("{closed} of {total}")}
            </progress>
            {current.map(|r| {
                let failure = r.failure.clone().map(|f| format!(" Failed: {f}")).unwrap_or_default();
                match r.buffer.clone() {
                    // An asynchronous group: the round is a buffer filling up.
                    Some(b) => view! {
                        <div id="current-round" data-round=r.round data-state=r.state.as_str()
                            data-buffer-filled=b.filled data-buffer-size=b.size>
                            <label for="buffer-progress">
                                {format!(
                                    "Version {} (asynchronous): {} of {} updates in the buffer{}; \
                                     a new version is published when it is full.{failure}",
                                    r.round, b.filled, b.size,
                                    if b.stale > 0 {
                                        format!(", {} trained from an older version (they count less)", b.stale)
                                    } else {
                                        String::new()
                                    },
                                )}
                            </label>
                            <progress id="buffer-progress" max=b.size.max(1) value=b.filled>
                                {format!("{} of {}", b.filled, b.size)}
                            </progress>
                        </div>
                    }
                    .into_any(),
                    None => view! {
                        <p id="current-round" data-round=r.round data-state=r.state.as_str()>
                            {format!(
                                "Round {}: {} · {} of {} selected member(s) sent their update.{failure}",
                                r.round, r.state.as_str(), r.reported, r.selected
                            )}
                        </p>
                    }
                    .into_any(),
                }
            })}
            {secure_rounds(&list, &names)}
        }
    };
    view! {
        <section class="card" aria-labelledby="progress-heading">
            <h2 id="progress-heading">"Members and rounds"</h2>
            {members}
            {form_error("remove-error", remove.value())}
            {round_view}
        </section>
    }
}

/// Secure groups: each round's SecAgg+ stage, who dropped out after sharing their keys (their
/// masks were removed with the others' shares), and whether the sum could be unmasked.
fn secure_rounds(
    list: &[RoundView],
    names: &std::collections::BTreeMap<i64, String>,
) -> Option<impl IntoView + use<>> {
    let rows: Vec<_> = list
        .iter()
        .filter_map(|r| r.secagg.clone().map(|s| (r.round, s)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let name = |id: &i64| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("member {id}"))
    };
    Some(view! {
        <table id="secure-rounds" class="secure-rounds">
            <caption>
                "Secure aggregation: the server only learned each round's sum. Members who \
                 dropped out after sharing their keys were unmasked with the others' shares."
            </caption>
            <thead>
                <tr>
                    <th>"Round"</th>
                    <th>"Stage"</th>
                    <th>"Sent keys / shares / update"</th>
                    <th>"Dropped out"</th>
                    <th>"Unmasking"</th>
                </tr>
            </thead>
            <tbody>
                {rows.into_iter().map(|(round, s)| {
                    let dropped = if s.dropped.is_empty() {
                        "nobody".to_string()
                    } else {
                        s.dropped.iter().map(name).collect::<Vec<_>>().join(", ")
                    };
                    let (state, words) = match s.unmasked {
                        Some(true) => ("ok", "succeeded"),
                        Some(false) => ("failed", "failed: too few shares"),
                        None => ("pending", "not yet"),
                    };
                    view! {
                        <tr data-round=round data-unmasked=state>
                            <td>{round}</td>
                            <td>{s.stage.map_or("", |st| st.as_str())}</td>
                            <td>{format!("{} / {} / {}", s.advertised, s.shared, s.survived)}</td>
                            <td class="secure-dropped">{dropped}</td>
                            <td>{words}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    })
}

/// A member's state key (`data-state`, the tag's colour) and the words shown for it: its
/// place in the current round first (with its training client's presence and progress),
/// else whether it is connected and ready to train.
fn member_state(m: &api::GroupMember) -> (&'static str, String) {
    if m.left {
        return ("left", "left".into());
    }
    let gone = m.presence == Some(api::Presence::Gone);
    let connected = m.presence == Some(api::Presence::Connected);
    match m.round_status {
        Some(MemberStatus::Reported) => ("done", "update sent".into()),
        Some(MemberStatus::Selected) if gone => (
            "gone",
            "gone: its training tab closed, the round no longer waits for it".into(),
        ),
        Some(MemberStatus::Selected) => match m.progress {
            Some(p) => ("training", format!("training, {:.0}% done", p * 100.0)),
            None if m.presence == Some(api::Presence::Unseen) => {
                ("selected", "selected, waiting for its update".into())
            }
            None => ("training", "training".into()),
        },
        Some(MemberStatus::Failed) => ("failed", "no update this round".into()),
        Some(MemberStatus::Dropped) => ("dropped", "dropped out".into()),
        _ if gone => ("gone", "gone: not selected until it returns".into()),
        _ if m.ready && connected => ("ready", "connected, ready".into()),
        _ if m.ready => ("ready", "ready".into()),
        _ if m.role == api::MemberRole::Owner => ("not-training", "not training".into()),
        _ => ("not-ready", "has not picked its data yet".into()),
    }
}

#[component]
fn Charts(rounds: LocalResource<Result<Vec<RoundView>, api::ApiError>>) -> impl IntoView {
    move || {
        let list = rounds.get().and_then(Result::ok).unwrap_or_default();
        let closed: Vec<&RoundView> = list
            .iter()
            .filter(|r| r.state == RoundState::Closed)
            .collect();
        if closed.is_empty() {
            return ().into_any();
        }
        let fit: Vec<(f64, Option<&Metrics>)> = closed
            .iter()
            .map(|r| (r.round as f64, r.metrics.as_ref()))
            .collect();
        let eval: Vec<(f64, Option<&Metrics>)> = closed
            .iter()
            .map(|r| (r.round as f64, r.evaluation.as_ref().map(|e| &e.aggregate)))
            .collect();
        let (train, held_out) = (MetricSource::Training, MetricSource::Evaluation);
        let train_prefix = format!("{}: ", train.short());
        let eval_prefix = format!("{}: ", held_out.short());
        let mut loss = series_by_metric(&fit, &train_prefix, is_loss);
        loss.extend(series_by_metric(&eval, &eval_prefix, is_loss));
        let mut quality = series_by_metric(&fit, &train_prefix, is_quality);
        quality.extend(series_by_metric(&eval, &eval_prefix, is_quality));
        view! {
            <section class="card charts" aria-labelledby="charts-heading">
                <h2 id="charts-heading">"The group's model by round"</h2>
                <dl class="metric-sources">
                    <dt data-metric-source=train.hook()>{train.short()}</dt>
                    <dd>{train.explanation()}</dd>
                    <dt data-metric-source=held_out.hook()>{held_out.short()}</dt>
                    <dd>{held_out.explanation()}</dd>
                </dl>
                <div class="columns">
                    {line_chart("loss-chart".into(), "Loss by round".into(), "round", loss)}
                    {line_chart("accuracy-chart".into(), "Accuracy by round".into(), "round", quality)}
                </div>
            </section>
        }
        .into_any()
    }
}

/// A DP group's budget: epsilon spent after each closed round against the target, and why
/// training stopped when the budget ended it.
#[component]
fn Privacy(
    latest: Memo<Option<api::GroupView>>,
    rounds: LocalResource<Result<Vec<RoundView>, api::ApiError>>,
) -> impl IntoView {
    let dp = Memo::new(move |_| latest.with(|g| g.as_ref().and_then(|g| g.dp.clone())));
    move || {
        let dp = dp.get()?;
        let p = dp.params.clone();
        let spent: Vec<(f64, f64)> = rounds
            .get()
            .and_then(Result::ok)
            .unwrap_or_default()
            .iter()
            .filter(|r| r.state == RoundState::Closed)
            .filter_map(|r| Some((r.round as f64, r.privacy.as_ref()?.epsilon?)))
            .filter(|(_, e)| e.is_finite())
            .collect();
        let series = privacy_series(
            &spent,
            p.epsilon,
            "ε spent by the group's versions",
            "Target ε",
        );
        let summary = format!(
            "ε spent: {} of the target {} (δ {:e}) after {} round(s).",
            short_number(dp.spent_epsilon),
            short_number(p.epsilon),
            p.delta,
            dp.rounds_counted
        );
        Some(view! {
            <section class="card privacy-budget" aria-labelledby="privacy-heading">
                <h2 id="privacy-heading">"Privacy budget"</h2>
                <p class="hint">
                    "Each round that releases a model version spends some of the privacy budget. \
                     Epsilon (ε) bounds how much more any version reveals about one partner's \
                     rows than a model trained without that partner; training stops before a \
                     round would pass the target."
                </p>
                <p id="privacy-spent" data-spent=dp.spent_epsilon.to_string()
                    data-target=p.epsilon.to_string() data-rounds=dp.rounds_counted>
                    <strong>{summary}</strong>
                </p>
                {dp.budget_exhausted.clone().map(|why| view! {
                    <p class="status-note warn" id="privacy-exhausted" role="status">
                        {format!("Training stopped at the privacy budget: {why}.")}
                    </p>
                })}
                {line_chart("privacy-chart".into(), "Privacy spent (ε) by round".into(), "round", series)}
            </section>
        })
    }
}

/// The epsilon spent after each round, with the budget as a flat line over the same rounds.
pub(crate) fn privacy_series(
    spent: &[(f64, f64)],
    budget: f64,
    spent_name: &str,
    budget_name: &str,
) -> Vec<Series> {
    if spent.is_empty() {
        return Vec::new();
    }
    let mut points = spent.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let limit = points.iter().map(|&(x, _)| (x, budget)).collect();
    vec![
        Series {
            name: spent_name.to_string(),
            points,
        },
        Series {
            name: format!("{budget_name} {}", short_number(budget)),
            points: limit,
        },
    ]
}

/// A version's (ε, δ) as a cell shows it; "—" outside DP groups.
pub(crate) fn privacy_text(p: Option<&VersionPrivacy>) -> String {
    match p {
        Some(p) => format!("ε {}, δ {:e}", short_number(p.epsilon), p.delta),
        None => "—".to_string(),
    }
}

/// A member leaves: rounds stop waiting for it.
#[component]
fn Leave(id: i64) -> impl IntoView {
    let session = use_session();
    let navigate = leptos_router::hooks::use_navigate();
    let leave = Action::new_local(move |_: &()| {
        let navigate = navigate.clone();
        async move {
            api::leave_group(&session.csrf(), id).await?;
            navigate("/groups", Default::default());
            Ok(())
        }
    });
    view! {
        <details class="leave">
            <summary>"Leave this group"</summary>
            <p class="hint">
                "You will no longer be asked to train; the group's models stay visible to you."
            </p>
            <button type="button" class="danger" id="leave-group"
                disabled=move || leave.pending().get()
                on:click=move |_| {
                    leave.dispatch(());
                }>
                "Leave the group"
            </button>
            {form_error("leave-error", leave.value())}
        </details>
    }
}

/// `"Churn study (EU)"` -> `"churn-study-eu"`: a valid deployment name.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out: String = out.chars().take(100).collect();
    if out.is_empty() { "model".into() } else { out }
}

#[component]
fn Versions(
    id: i64,
    latest: Memo<Option<api::GroupView>>,
    versions: LocalResource<Result<Vec<VersionView>, api::ApiError>>,
    can_manage: bool,
) -> impl IntoView {
    let session = use_session();
    let chosen = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    Effect::new(move |_| {
        if name.get_untracked().is_empty()
            && let Some(g) = latest.get()
        {
            name.set(slug(&g.name));
        }
    });
    let promote = Action::new_local(move |(name, version): &(String, String)| {
        let (name, version) = (name.trim().to_string(), version.clone());
        async move {
            let version_id = version.parse::<i64>().map_err(|_| api::ApiError::Refused {
                status: 400,
                code: "bad_request".into(),
                message: "choose a version to deploy".into(),
                retry_after: None,
            })?;
            api::promote(&session.csrf(), &name, version_id).await
        }
    });
    let list = move || versions.get().and_then(Result::ok).unwrap_or_default();
    // Offer the newest version until the owner picks one.
    let picked = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(newest) = list().last()
            && !picked.get_untracked()
        {
            chosen.set(newest.id.to_string());
        }
    });
    view! {
        <section class="card" aria-labelledby="versions-heading">
            <h2 id="versions-heading">"Model versions"</h2>
            <Transition fallback=|| view! { <p>"Loading versions…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move {
                        versions.await.map(|list| {
                            if list.is_empty() {
                                return view! {
                                    <p class="empty">"No version yet: the first appears when training starts."</p>
                                }
                                .into_any();
                            }
                            view! {
                                <div class="table-wrap">
                                    <table id="version-table">
                                        <thead>
                                            <tr>
                                                <th scope="col">"Version"</th>
                                                <th scope="col">"Round"</th>
                                                <th scope="col">"Metrics (trainers' training split, weighted by rows)"</th>
                                                <th scope="col">
                                                    <abbr title="What the version cost each partner's privacy (differential privacy): ε, at δ">"Privacy (ε, δ)"</abbr>
                                                </th>
                                                <th scope="col">"Download"</th>
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {list.into_iter().rev().map(version_row).collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                            }
                            .into_any()
                        })
                    })}
                </ErrorBoundary>
            </Transition>
            {can_manage.then(|| view! {
                <form class="inline promote" on:submit=move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    promote.dispatch((name.get_untracked(), chosen.get_untracked()));
                }>
                    <div>
                        <label for="promote-version">"Deploy version"</label>
                        <select id="promote-version" bind:value=chosen
                            on:change=move |_| picked.set(true)>
                            {move || list().into_iter().rev().map(|v| {
                                let value = v.id.to_string();
                                view! {
                                    <option value=value>{format!("{} (round {})", v.id, v.round)}</option>
                                }
                            }).collect_view()}
                        </select>
                    </div>
                    <div>
                        <label for="promote-name">"as the model named"</label>
                        <input id="promote-name" type="text" required maxlength="100"
                            pattern="[A-Za-z0-9._\\-]+" title="Letters, digits, '-', '_' and '.'"
                            bind:value=name/>
                    </div>
                    <button type="submit" id="promote-button" disabled=move || promote.pending().get()>
                        "Deploy"
                    </button>
                </form>
                {form_error("promote-error", promote.value())}
                {move || promote.value().get().and_then(Result::ok).map(|d| {
                    let model = format!("/models/{}", api::encode(&d.name));
                    let predict = format!("/predict/{}", api::encode(&d.name));
                    view! {
                        <p class="ok" id="promote-ok" data-version=d.version_id role="status">
                            {format!("“{}” now serves version {}. ", d.name, d.version_id)}
                            <A href=model>"See the model"</A>
                            " · "
                            <A href=predict>"Predict with it"</A>
                        </p>
                    }
                })}
            })}
            <p class="hint">
                <A href=format!("/history#group-{id}")>"The history of this run"</A>
            </p>
        </section>
    }
}

fn version_row(v: VersionView) -> impl IntoView {
    let metrics = metric_text(v.metrics.as_ref());
    let weights = format!("/api/versions/{}/weights", v.id);
    let onnx = v.has_onnx.then(|| format!("/api/versions/{}/onnx", v.id));
    let privacy = privacy_text(v.privacy.as_ref());
    view! {
        <tr data-version=v.id>
            <td>{v.id}</td>
            <td>{v.round}</td>
            <td>{if metrics.is_empty() { "–".to_string() } else { metrics }}</td>
            <td class="version-privacy" data-privacy=privacy.clone()
                data-epsilon=v.privacy.map(|p| p.epsilon.to_string())>{privacy.clone()}</td>
            <td>
                <a href=weights download="">"weights"</a>
                {onnx.map(|u| view! { " · " <a href=u download="">"ONNX"</a> })}
            </td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_reads_as_text_and_charts() {
        assert_eq!(privacy_text(None), "—");
        let p = VersionPrivacy {
            epsilon: 2.3456,
            delta: 1e-5,
        };
        assert_eq!(privacy_text(Some(&p)), "ε 2.35, δ 1e-5");
        assert!(privacy_series(&[], 8.0, "spent", "Target").is_empty());
        let series = privacy_series(&[(2.0, 3.0), (1.0, 1.5)], 8.0, "spent", "Target ε");
        assert_eq!(series[0].points, vec![(1.0, 1.5), (2.0, 3.0)]);
        assert_eq!(series[1].name, "Target ε 8");
        assert_eq!(series[1].points, vec![(1.0, 8.0), (2.0, 8.0)]);
    }

    #[test]
    fn deployment_names_are_slugs() {
        assert_eq!(slug("Churn study (EU)"), "churn-study-eu");
        assert_eq!(slug("  "), "model");
        assert_eq!(slug("Ünïcode 42"), "n-code-42");
    }

    #[test]
    fn member_states_read_from_the_server() {
        let m = |status: Option<MemberStatus>, ready: bool, left: bool| api::GroupMember {
            member_id: 1,
            name: "a".into(),
            role: api::MemberRole::Member,
            ready,
            left,
            round_status: status,
            presence: None,
            progress: None,
        };
        let label = |m: api::GroupMember| member_state(&m).1;
        assert_eq!(
            label(m(Some(MemberStatus::Reported), true, false)),
            "update sent"
        );
        assert_eq!(
            label(m(Some(MemberStatus::Selected), true, false)),
            "training"
        );
        assert_eq!(
            label(m(Some(MemberStatus::Failed), true, false)),
            "no update this round"
        );
        assert_eq!(label(m(None, true, false)), "ready");
        assert_eq!(label(m(None, false, false)), "has not picked its data yet");
        // Leaving outweighs the round: the round stops waiting for whoever left.
        assert_eq!(label(m(Some(MemberStatus::Dropped), true, true)), "left");
        assert_eq!(member_state(&m(None, false, false)).0, "not-ready");
        // An owner who does not train is not "not ready" forever.
        let owner = api::GroupMember {
            role: api::MemberRole::Owner,
            ..m(None, false, false)
        };
        assert_eq!(member_state(&owner).1, "not training");
        // Presence and progress: training with its share done, or gone.
        let training = api::GroupMember {
            presence: Some(api::Presence::Connected),
            progress: Some(0.4),
            ..m(Some(MemberStatus::Selected), true, false)
        };
        assert_eq!(member_state(&training).1, "training, 40% done");
        let gone = api::GroupMember {
            presence: Some(api::Presence::Gone),
            ..m(Some(MemberStatus::Selected), true, false)
        };
        assert_eq!(member_state(&gone).0, "gone");
        assert_eq!(countdown_text(125), "2 min 05 s");
        assert_eq!(countdown_text(-3), "0 s");
    }
}
