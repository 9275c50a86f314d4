//! `/admin`: for administrators. Accounts and their roles (`/api/admin/users`), every group
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
    view! {
        <section class="card" aria-labelledby="users-heading">
            <h2 id="users-heading">"Accounts"</h2>
            {form_error("role-error", set_role.value())}
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
                                    </tr></thead>
                                    <tbody>
                                        {list.into_iter().map(|u| {
                                            let id = u.id;
                                            let role = u.role.as_str();
                                            let select_id = format!("role-{id}");
                                            let label = format!("Role of {}", u.email);
                                            view! {
                                                <tr>
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
}
