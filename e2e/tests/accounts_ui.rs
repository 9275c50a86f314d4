//! Accounts through the web app's forms: signing up, out and in, and the errors people see.

use anyhow::{Context, Result, ensure};
use b3o_e2e::{Browser, Server};
use fantoccini::Locator;
use serde_json::json;

const PASSWORD: &str = "violet staircase 42 harbour";

/// Creates an account through the API, as another browser would have.
async fn register_over_http(server: &Server, email: &str) -> Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{}/api/auth/register", server.url))
        .json(&json!({
            "email": email,
            "display_name": "Grace Hopper",
            "organisation": "Navy Lab",
            "password": PASSWORD,
        }))
        .send()
        .await
        .context("registering over HTTP")?;
    ensure!(
        response.status() == 201,
        "register answered {}",
        response.status()
    );
    Ok(())
}

async fn no_console_errors(browser: &Browser) -> Result<()> {
    let errors = browser.console_errors().await?;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    Ok(())
}

async fn signed_in_as(browser: &Browser, name: &str) -> Result<()> {
    browser.wait_for_text("#nav-user", name).await?;
    Ok(())
}

async fn signed_out(browser: &Browser) -> Result<()> {
    browser.wait_for(".nav-account a[href='/sign-in']").await?;
    let user = browser.client.find_all(Locator::Css("#nav-user")).await?;
    ensure!(user.is_empty(), "the nav still shows a signed-in user");
    Ok(())
}

async fn sign_in(browser: &Browser, email: &str, password: &str) -> Result<()> {
    browser.click(".nav-account a[href='/sign-in']").await?;
    browser.fill("#email", email).await?;
    browser.fill("#password", password).await?;
    browser.click("form button[type='submit']").await
}

/// A newcomer signs up through the form and is signed in at once (the nav shows their name),
/// signs out, and signs in again; the session survives a reload. Nothing is logged as an error.
#[tokio::test]
async fn a_person_signs_up_signs_out_and_signs_in_again() -> Result<()> {
    let server = Server::start()?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("accounts_sign_up_out_in", async {
            browser.client.goto(&server.url).await?;
            browser.click(".nav-account a[href='/sign-up']").await?;
            browser.fill("#email", "ada@example.org").await?;
            browser.fill("#display-name", "Ada Lovelace").await?;
            browser.fill("#organisation", "Analytical Engines").await?;
            browser.fill("#password", PASSWORD).await?;
            browser.click("form button[type='submit']").await?;
            signed_in_as(&browser, "Ada Lovelace").await?;
            // Signing up lands on the home page.
            browser.wait_for("#server-status[data-status]").await?;

            browser.click("#sign-out").await?;
            signed_out(&browser).await?;
            // The server forgot the session too: a fresh load is still signed out.
            browser.client.refresh().await?;
            signed_out(&browser).await?;

            sign_in(&browser, "ada@example.org", PASSWORD).await?;
            signed_in_as(&browser, "Ada Lovelace").await?;
            browser.client.refresh().await?;
            signed_in_as(&browser, "Ada Lovelace").await?;

            // The profile page shows the account, reached through the nav.
            browser.click("#nav-user").await?;
            browser
                .wait_for_text("main", "Signed in as ada@example.org")
                .await?;
            no_console_errors(&browser).await
        })
        .await;
    browser.close().await?;
    outcome
}

/// A wrong password is explained next to the form in plain words, and nobody is signed in.
#[tokio::test]
async fn a_wrong_password_shows_a_clear_error() -> Result<()> {
    let server = Server::start()?;
    register_over_http(&server, "grace@example.org").await?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("accounts_wrong_password", async {
            browser.client.goto(&server.url).await?;
            sign_in(&browser, "grace@example.org", "not the password at all").await?;
            let text = browser
                .wait_for_text("#sign-in-error", "Wrong email or password")
                .await?;
            ensure!(
                browser
                    .wait_for("#sign-in-error")
                    .await?
                    .attr("role")
                    .await?
                    == Some("alert".into()),
                "the error is not announced: {text}"
            );
            signed_out(&browser).await?;
            ensure!(
                browser.client.current_url().await?.path() == "/sign-in",
                "left the sign-in page"
            );
            // The right password still works after a mistake.
            browser.fill("#password", PASSWORD).await?;
            browser.click("form button[type='submit']").await?;
            signed_in_as(&browser, "Grace Hopper").await?;
            no_console_errors(&browser).await
        })
        .await;
    browser.close().await?;
    outcome
}

/// The server's refusals reach the sign-up form as sentences: an address already taken.
#[tokio::test]
async fn signing_up_with_a_taken_email_says_so() -> Result<()> {
    let server = Server::start()?;
    register_over_http(&server, "taken@example.org").await?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("accounts_taken_email", async {
            browser
                .client
                .goto(&format!("{}/sign-up", server.url))
                .await?;
            browser.fill("#email", "taken@example.org").await?;
            browser.fill("#display-name", "Someone Else").await?;
            browser.fill("#organisation", "Elsewhere").await?;
            browser.fill("#password", PASSWORD).await?;
            browser.click("form button[type='submit']").await?;
            browser
                .wait_for_text(
                    "#sign-up-error",
                    "An account with this email already exists.",
                )
                .await?;
            signed_out(&browser).await?;
            // The 409 is the answer under test; Chromium logs every 4xx response.
            let errors: Vec<String> = browser
                .console_errors()
                .await?
                .into_iter()
                .filter(|e| !(e.contains("/api/auth/register") && e.contains("status of 409")))
                .collect();
            ensure!(errors.is_empty(), "console errors: {errors:#?}");
            Ok(())
        })
        .await;
    browser.close().await?;
    outcome
}

/// Issue #21: an administrator resets a person's password on the admin page (confirmed
/// first), the one-time password is shown once; the person signs in with it and is made to
/// choose a new one before anything else (on every page, after a reload too), then works
/// normally. The old password no longer works.
#[tokio::test]
async fn a_reset_password_must_be_replaced_at_the_next_sign_in() -> Result<()> {
    let server = Server::start()?;
    register_over_http(&server, "grace@example.org").await?;
    let browser = Browser::start().await?;
    let outcome = browser
        .check("accounts_forced_password_change", async {
            browser.client.goto(&server.url).await?;
            sign_in(&browser, b3o_e2e::ADMIN_EMAIL, b3o_e2e::ADMIN_PASSWORD).await?;
            browser.wait_for("#nav-user").await?;
            browser.click("a[href='/admin']").await?;
            let row = "#admin-users tr[data-email='grace@example.org']";
            browser.click(&format!("{row} button[id^='reset-']")).await?;
            // Nothing happens before the administrator confirms.
            let question = browser
                .wait_for_text("#admin-confirm-question", "grace@example.org")
                .await?;
            ensure!(question.contains("one-time password"), "{question}");
            browser.click("#confirm-reset").await?;
            let one_time = browser
                .wait_for("#one-time-password")
                .await?
                .text()
                .await?
                .trim()
                .to_string();
            ensure!(one_time.len() >= 16, "one-time password {one_time:?}");
            browser
                .wait_for_text(&format!("{row} .user-status"), "new password")
                .await?;
            browser.click("#sign-out").await?;
            signed_out(&browser).await?;

            sign_in(&browser, "grace@example.org", &one_time).await?;
            browser
                .wait_for_text("#choose-password h1", "Choose a new password")
                .await?;
            // The same form until the password is changed, after a reload too. (The reload is
            // of the home page, which asks the server for nothing an account needs: a page
            // that did would be refused while the app still checks who is signed in.)
            browser.client.refresh().await?;
            browser.wait_for("#choose-password").await?;
            browser.click("a[href='/groups']").await?;
            browser.wait_for("#choose-password").await?;
            browser.fill("#one-time-current", &one_time).await?;
            browser
                .fill("#choose-new-password", "grace chose this herself")
                .await?;
            browser
                .fill("#choose-repeat-password", "grace chose this herself")
                .await?;
            browser.click("#choose-password-submit").await?;
            // The app opens again, on the page the person asked for.
            browser.wait_for_text("main h1", "Training groups").await?;
            let form = browser
                .client
                .find_all(Locator::Css("#choose-password"))
                .await?;
            ensure!(form.is_empty(), "still asked for a new password");
            browser.click("#nav-user").await?;
            browser
                .wait_for_text("main", "Signed in as grace@example.org")
                .await?;

            let http = reqwest::Client::new();
            let old = http
                .post(format!("{}/api/auth/login", server.url))
                .json(&json!({ "email": "grace@example.org", "password": PASSWORD }))
                .send()
                .await?;
            ensure!(old.status() == 401, "the old password answered {}", old.status());
            let new = http
                .post(format!("{}/api/auth/login", server.url))
                .json(&json!({ "email": "grace@example.org", "password": "grace chose this herself" }))
                .send()
                .await?;
            ensure!(new.status() == 200, "the new password answered {}", new.status());
            no_console_errors(&browser).await
        })
        .await;
    browser.close().await?;
    outcome
}
