//! `/how-it-works`: what stays on your machine, what the server sees, how rounds and
//! strategies work, and where models run, for people deciding whether to take part.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::metrics::MetricSource;

#[component]
pub fn HowItWorks() -> impl IntoView {
    view! {
        <article class="how" id="how-it-works">
            <h1>"How it works"</h1>
            <p class="lead muted">
                "B3O Edge trains one model across several organisations without moving their "
                "data, and lets anyone run a shared model on their own files without code."
            </p>

            <section class="card" aria-labelledby="how-machine">
                <h2 id="how-machine">"What stays on your machine"</h2>
                <ul>
                    <li>"Your file. It is read by this page and trained on inside your browser "
                        "(on the graphics card when it can, else on the processor); it is never uploaded."</li>
                    <li>"Every row, every cell, and the split between the rows you train on and "
                        "the rows kept aside to evaluate the model."</li>
                    <li>"When you predict in the browser, the file you score and its predictions."</li>
                </ul>
            </section>

            <section class="card" aria-labelledby="how-server">
                <h2 id="how-server">"What the server sees"</h2>
                <ul>
                    <li>"Column summaries before training: counts, means and spreads of numbers, "
                        "the categories of text columns. They are merged across members so "
                        "everyone prepares the data the same way."</li>
                    <li>"After each round, your weight update (the model's numbers after training "
                        "on your rows) and how many rows it was trained on."</li>
                    <li>"Your training and evaluation metrics (loss, accuracy) for the round."</li>
                    <li>"Your account's name and organisation, shown to the other members of "
                        "your groups. Never your rows."</li>
                </ul>
            </section>

            <section class="card" aria-labelledby="how-rounds">
                <h2 id="how-rounds">"Rounds"</h2>
                <ol>
                    <li>"The group's owner creates it: the columns, what to predict, the model and "
                        "how many members a round needs. Members join with the group's code."</li>
                    <li>"Each member chooses a local file and says it is ready; the owner starts training."</li>
                    <li>"In a round, every selected member downloads the group's current model, "
                        "trains it on its own rows for a few passes, and sends back the update."</li>
                    <li>"When enough updates have arrived (or the round's deadline passes), the "
                        "server combines them into the next version of the group's model."</li>
                    <li>"Members then score the new version on the rows they kept aside: that "
                        "is the evaluation, the fairest measure of how good the model is."</li>
                    <li>"The owner can deploy any version under a name, so that others can predict with it."</li>
                </ol>
            </section>

            <section class="card" aria-labelledby="how-strategies">
                <h2 id="how-strategies">"Strategies: how updates are combined"</h2>
                <dl class="api-list">
                    <dt>"FedAvg"</dt>
                    <dd>"The mean of the members' models, weighted by their rows. The usual choice."</dd>
                    <dt>"FedProx"</dt>
                    <dd>"FedAvg with a pull towards the group's model during local training: "
                        "steadier when members' data differ a lot."</dd>
                    <dt>"FedAvgM, FedAdam, FedYogi, FedAdagrad"</dt>
                    <dd>"The server treats the mean update as a step of an optimiser with "
                        "momentum or adaptive steps: often fewer rounds for the same quality."</dd>
                    <dt>"Median, trimmed mean, Krum"</dt>
                    <dd>"Robust to a few members sending wrong or hostile updates, at some cost "
                        "in accuracy when everyone is honest."</dd>
                </dl>
            </section>

            <section class="card" aria-labelledby="how-metrics">
                <h2 id="how-metrics">"Which numbers mean what"</h2>
                <dl class="api-list">
                    {[MetricSource::Training, MetricSource::Evaluation, MetricSource::Test]
                        .into_iter()
                        .map(|m| view! {
                            <dt data-metric-source=m.hook()>{m.short()}</dt>
                            <dd>{m.explanation()}</dd>
                        })
                        .collect_view()}
                </dl>
            </section>

            <section class="card" aria-labelledby="how-run">
                <h2 id="how-run">"Where models run"</h2>
                <ul>
                    <li>"Predictions run in your browser whenever it can load the model: your file "
                        "stays here, and a model used once works offline."</li>
                    <li>"If the browser cannot, the page says so and sends the file to the server, "
                        "which predicts and keeps nothing. Very large files can run as batch jobs "
                        "on the server; their results wait in your history."</li>
                    <li>"Programs call the same models over HTTP: see the API reference, linked "
                        "from your profile's API tokens."</li>
                </ul>
            </section>

            <p class="actions">
                <A href="/" attr:class="button">"Try a public model"</A>
                <A href="/groups">"Start or join a group"</A>
            </p>
        </article>
    }
}
