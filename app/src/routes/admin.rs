//! `/admin`: for administrators. Accounts: roles, password resets (a one-time password shown
//! once), disabling and deleting, each confirmed first (`/api/admin/users`); every group
//! with its rounds and members (`GET /api/groups` lists all groups to administrators), and the
//! server's health (`/healthz`) with a summary of its Prometheus metrics (`/metrics`).

use leptos::prelude::*;
use leptos_router::components::A;

use super::{form_error, show_errors};
use crate::api;
use crate::session::use_session;

#[component]
pub fn Admin() -> impl IntoView {
    let session = use_session();
    let is_admin = Memo::new(move |_| session.user().map(|u| u.role == api::Role::Admin));
    view! {
        <h1>"Administration"</h1>
        {move || match is_admin.get() {
            None => view! {
                <p class="empty"><A href="/sign-in">"Sign in"</A> " with an administrator account."</p>
            }
            .into_any(),
            Some(false) => view! {
                <p class="form-error" role="alert">"This page is for administrators."</p>
            }
            .into_any(),
            Some(true) => view! {
                <Health/>
                <Groups/>
                <Users/>
            }
            .into_any(),
        }}
    }
}

/// One metric family of a Prometheus text exposition, summed over its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTotal {
    pub name: String,
    pub help: String,
    pub value: f64,
    pub series: usize,
}

/// Sums each metric family (histogram buckets left out: their `_sum` and `_count` remain).
pub fn summarise_metrics(text: &str) -> Vec<MetricTotal> {
    let mut out: Vec<MetricTotal> = Vec::new();
    let mut helps: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                helps.push((name.to_string(), help.to_string()));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_part, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = name_part.split('{').next().unwrap_or(name_part).trim();
        if name.ends_with("_bucket") || !value.is_finite() {
            continue;
        }
        match out.iter_mut().find(|m| m.name == name) {
            Some(m) => {
                m.value += value;
                m.series += 1;
            }
            None => out.push(MetricTotal {
                name: name.to_string(),
                help: String::new(),
                value,
                series: 1,
            }),
        }
    }
    for m in &mut out {
        let family = m
            .name
            .strip_suffix("_sum")
            .or_else(|| m.name.strip_suffix("_count"))
            .unwrap_or(&m.name);
        if let Some((_, help)) = helps.iter().find(|(n, _)| n == &m.name || n == family) {
            m.help = help.clone();
        }
    }
    out
}

#[component]
fn Health() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let health = LocalResource::new(move || {
        reload.track();
        api::health()
    });
    let metrics = LocalResource::new(move || {
        reload.track();
        api::metrics_text()
    });
    view! {
        <section class="card" aria-labelledby="health-heading">
            <h2 id="health-heading">"Server health"</h2>
            {move || health.get().map(|r| match r {
                Ok(h) => {
                    let status = api::check_name(h.status).to_string();
                    let rows = [
                        ("database", api::check_name(h.database).to_string()),
                        ("instance created at", h.instance_created_at),
                        ("status", status.clone()),
                        ("version", h.version),
                    ]
                    .into_iter()
                    .map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> })
                    .collect_view();
                    view! {
                        <p id="admin-health" data-status=status.clone()>
                            <strong>{format!("Server {status}")}</strong>
                        </p>
                        <dl class="metrics">{rows}</dl>
                    }.into_any()
                }
                Err(e) => view! {
                    <p id="admin-health" class="error" data-status="error" role="alert">{e.to_string()}</p>
                }.into_any(),
            })}
            <h3>"Metrics"</h3>
            {move || metrics.get().map(|r| match r {
                Ok(text) => {
                    let list = summarise_metrics(&text);
                    if list.is_empty() {
                        return view! { <p class="muted">"No metrics recorded yet."</p> }.into_any();
                    }
                    view! {
                        <div class="table-wrap">
                            <table id="admin-metrics">
                                <thead><tr>
                                    <th scope="col">"Metric"</th>
                                    <th scope="col">"Total"</th>
                                    <th scope="col">"Series"</th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|m| view! {
                                        <tr>
                                            <td><code>{m.name.clone()}</code><br/><span class="hint">{m.help.clone()}</span></td>
                                            <td>{crate::charts::short_number(m.value)}</td>
                                            <td>{m.series}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any()
                }
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
            <button type="button" class="secondary" on:click=move |_| reload.update(|n| *n += 1)>
                "Refresh"
            </button>
        </section>
    }
}

#[component]
fn Groups() -> impl IntoView {
    let groups = LocalResource::new(api::groups);
    view! {
        <section class="card" aria-labelledby="admin-groups-heading">
            <h2 id="admin-groups-heading">"Groups, rounds and clients"</h2>
            <Transition fallback=|| view! { <p>"Loading groups…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move {
                        groups.await.map(|list| view! {
                            <div class="table-wrap">
                                <table id="admin-groups">
                                    <thead><tr>
                                        <th scope="col">"Group"</th>
                                        <th scope="col">"Phase"</th>
                                        <th scope="col">"Round"</th>
                                        <th scope="col">"Members"</th>
                                    </tr></thead>
                                    <tbody>
                                        {list.into_iter().map(|g| {
                                            let href = format!("/groups/{}", g.id);
                                            let round = match (g.current_round, g.current_round_state) {
                                                (Some(n), Some(s)) => format!("{n} of {} ({})", g.rounds, s.as_str()),
                                                _ => format!("– of {}", g.rounds),
                                            };
                                            view! {
                                                <tr>
                                                    <td><A href=href>{g.name}</A></td>
                                                    <td>{g.phase.as_str().replace('_', " ")}</td>
                                                    <td>{round}</td>
                                                    <td>{g.members}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        })
                    })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

/// An administrator's action on an account, asked for confirmation before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    ResetPassword,
    Disable,
    Enable,
    Delete,
}

impl AccountAction {
    /// The button's words.
    pub fn label(self) -> &'static str {
        match self {
            AccountAction::ResetPassword => "Reset password",
            AccountAction::Disable => "Disable",
            AccountAction::Enable => "Enable",
            AccountAction::Delete => "Delete",
        }
    }

    /// `id` fragment of its buttons (`reset-3`, `confirm-reset`).
    pub fn slug(self) -> &'static str {
        match self {
            AccountAction::ResetPassword => "reset",
            AccountAction::Disable => "disable",
            AccountAction::Enable => "enable",
            AccountAction::Delete => "delete",
        }
    }

    /// What confirming does, in plain words.
    pub fn question(self, email: &str) -> String {
        match self {
            AccountAction::ResetPassword => format!(
                "Reset the password of {email}? A new one-time password is shown once here; \
                 give it to them privately. They are signed out everywhere, their API tokens \
                 stop working, and they must choose a new password when they sign in."
            ),
            AccountAction::Disable => format!(
                "Disable {email}? They are signed out everywhere, their API tokens stop \
                 working, and they cannot sign in until an administrator enables the account."
            ),
            AccountAction::Enable => format!("Enable {email} again? They can sign in again."),
            AccountAction::Delete => format!(
                "Delete {email} for good? Their sessions, API tokens and finished batch jobs are \
                 deleted. Groups they own stay, managed by administrators; their memberships \
                 stay in the groups' history. This cannot be undone."
            ),
        }
    }
}

/// What the last confirmed action did, for the status line.
#[derive(Debug, Clone, PartialEq)]
enum Done {
    /// The one-time password, shown once.
    Reset {
        email: String,
        password: String,
    },
    Said(String),
}

#[component]
fn Users() -> impl IntoView {
    let session = use_session();
    let reload = RwSignal::new(0u32);
    let users = LocalResource::new(move || {
        reload.track();
        api::admin_users()
    });
    let set_role = Action::new_local(move |(id, role): &(i64, String)| {
        // The select offers the two roles only.
        let (id, role) = (*id, api::role_named(role).unwrap_or(api::Role::Member));
        async move {
            let r = api::set_role(&session.csrf(), id, role).await;
            reload.update(|n| *n += 1);
            r
        }
    });
    // Read once, untracked: a sign-out must not re-run the list below while the page goes.
    let me = session.user().map(|u| u.id);
    // The action waiting for confirmation: which, on whom.
    let asking = RwSignal::new(None::<(AccountAction, i64, String)>);
    let act = Action::new_local(move |(action, id, email): &(AccountAction, i64, String)| {
        let (action, id, email) = (*action, *id, email.clone());
        async move {
            let csrf = session.csrf();
            let done = match action {
                AccountAction::ResetPassword => {
                    let reset = api::reset_password(&csrf, id).await?;
                    Done::Reset {
                        email,
                        password: reset.one_time_password,
                    }
                }
                AccountAction::Disable => {
                    api::set_disabled(&csrf, id, true).await?;
                    Done::Said(format!("{email} is disabled."))
                }
                AccountAction::Enable => {
                    api::set_disabled(&csrf, id, false).await?;
                    Done::Said(format!("{email} is enabled again."))
                }
                AccountAction::Delete => {
                    let gone = api::delete_user(&csrf, id).await?;
                    Done::Said(format!(
                        "{email} is deleted ({} group(s) now managed by administrators, {} \
                         membership(s) kept in the groups' history).",
                        gone.groups_now_system_owned, gone.memberships_detached
                    ))
                }
            };
            reload.update(|n| *n += 1);
            Ok::<_, api::ApiError>(done)
        }
    });
    let confirm = move || {
        asking.with(|a| {
            a.clone().map(|(action, id, email)| {
                let question = action.question(&email);
                let confirm_id = format!("confirm-{}", action.slug());
                view! {
                    <div class="confirm" id="admin-confirm" role="alertdialog"
                        aria-labelledby="admin-confirm-question">
                        <p id="admin-confirm-question">{question}</p>
                        <button type="button" id=confirm_id
                            class=if matches!(action, AccountAction::Delete | AccountAction::Disable) { "danger" } else { "" }
                            on:click=move |_| {
                                asking.set(None);
                                act.dispatch((action, id, email.clone()));
                            }>
                            {format!("Yes, {}", action.label().to_lowercase())}
                        </button>
                        <button type="button" id="confirm-cancel" class="secondary"
                            on:click=move |_| asking.set(None)>"Cancel"</button>
                    </div>
                }
            })
        })
    };
    let done = move || {
        act.value().get().and_then(Result::ok).map(|done| match done {
            Done::Reset { email, password } => view! {
                <div class="ok" id="reset-result" role="status">
                    <p>{format!("One-time password for {email} (shown only now):")}</p>
                    <p><code id="one-time-password">{password}</code></p>
                    <p class="hint">
                        "Give it to them privately. They must choose a new password when they sign in."
                    </p>
                </div>
            }
            .into_any(),
            Done::Said(text) => view! { <p class="ok" id="admin-done" role="status">{text}</p> }.into_any(),
        })
    };
    view! {
        <section class="card" aria-labelledby="users-heading">
            <h2 id="users-heading">"Accounts"</h2>
            {form_error("role-error", set_role.value())}
            {form_error("account-action-error", act.value())}
            {confirm}
            {done}
            <Transition fallback=|| view! { <p>"Loading accounts…"</p> }>
                <ErrorBoundary fallback=show_errors>
                    {move || Suspend::new(async move {
                        users.await.map(|list| view! {
                            <div class="table-wrap">
                                <table id="admin-users">
                                    <thead><tr>
                                        <th scope="col">"Name"</th>
                                        <th scope="col">"Email"</th>
                                        <th scope="col">"Organisation"</th>
                                        <th scope="col">"Role"</th>
                                        <th scope="col">"Status"</th>
                                        <th scope="col">"Actions"</th>
                                    </tr></thead>
                                    <tbody>
                                        {list.into_iter().map(|u| {
                                            let id = u.id;
                                            let role = u.role.as_str();
                                            let select_id = format!("role-{id}");
                                            let label = format!("Role of {}", u.email);
                                            let status = match (u.disabled, u.must_change_password) {
                                                (true, _) => "disabled",
                                                (false, true) => "must choose a new password",
                                                (false, false) => "active",
                                            };
                                            let toggle = if u.disabled {
                                                AccountAction::Enable
                                            } else {
                                                AccountAction::Disable
                                            };
                                            let mut actions = vec![toggle, AccountAction::Delete];
                                            // Administrators change their own password on their profile.
                                            if me != Some(id) {
                                                actions.insert(0, AccountAction::ResetPassword);
                                            }
                                            let email = u.email.clone();
                                            let buttons = actions.into_iter().map(|action| {
                                                let email = email.clone();
                                                let button_id = format!("{}-{id}", action.slug());
                                                let aria = format!("{} {}", action.label(), email);
                                                view! {
                                                    <button type="button" id=button_id
                                                        class="secondary small"
                                                        aria-label=aria
                                                        disabled=move || act.pending().get()
                                                        on:click=move |_| asking.set(Some((action, id, email.clone())))>
                                                        {action.label()}
                                                    </button>
                                                }
                                            }).collect_view();
                                            view! {
                                                <tr data-email=u.email.clone()>
                                                    <td>{u.display_name.clone()}</td>
                                                    <td>{u.email.clone()}</td>
                                                    <td>{u.organisation.clone()}</td>
                                                    <td>
                                                        <label class="visually-hidden" for=select_id.clone()>{label}</label>
                                                        <select id=select_id
                                                            disabled=move || set_role.pending().get()
                                                            on:change=move |ev| {
                                                                set_role.dispatch((id, event_target_value(&ev)));
                                                            }>
                                                            <option value="member" selected=role == "member">"member"</option>
                                                            <option value="admin" selected=role == "admin">"admin"</option>
                                                        </select>
                                                    </td>
                                                    <td class="user-status">{status}</td>
                                                    <td class="actions">{buttons}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        })
                    })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_summed_by_family() {
        let text = "# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{version=\"1\"} 3\nreq_total{version=\"2\"} 4\nlat_bucket{le=\"0.1\"} 5\nlat_sum 0.5\nlat_count 7\nbad line\n";
        let m = summarise_metrics(text);
        assert_eq!(m[0].name, "req_total");
        assert_eq!(m[0].value, 7.0);
        assert_eq!(m[0].series, 2);
        assert_eq!(m[0].help, "Requests.");
        assert!(m.iter().all(|x| !x.name.ends_with("_bucket")));
        assert_eq!(m.iter().find(|x| x.name == "lat_count").unwrap().value, 7.0);
    }

    #[test]
    fn account_actions_say_what_confirming_does() {
        let reset = AccountAction::ResetPassword.question("ada@example.org");
        assert!(reset.contains("ada@example.org") && reset.contains("one-time password"));
        assert!(
            AccountAction::Delete
                .question("x")
                .contains("cannot be undone")
        );
        assert!(
            AccountAction::Disable
                .question("x")
                .contains("cannot sign in")
        );
        assert_eq!(AccountAction::Enable.slug(), "enable");
    }
}
