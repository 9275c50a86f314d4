//! The simulator's accounts: one per virtual client plus the group's owner, each with an API
//! token, created in one transaction. They share one argon2id hash of a random password
//! nobody keeps (nobody signs in as a simulated client; hashing a thousand passwords would
//! take longer than the simulation).

use crate::accounts::{hash_secret, now, password, random_secret};
use crate::error::ApiError;
use crate::state::AppState;

/// Creates `n` accounts and returns their API tokens, in order.
pub async fn create(state: &AppState, n: usize) -> Result<Vec<String>, ApiError> {
    let hash = password::hash(&state.accounts, password::generate()).await?;
    let now = now();
    let mut tokens = Vec::with_capacity(n);
    let mut tx = crate::db::begin_write(&state.db).await?;
    for i in 0..n {
        let name = if i == 0 {
            "owner".to_string()
        } else {
            format!("client {i}")
        };
        let user_id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, display_name, organisation, password_hash, role, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'member', $5, $6) RETURNING id",
        )
        .bind(format!("sim-{i}@simulate.invalid"))
        .bind(&name)
        .bind(&name)
        .bind(&hash)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let token = format!("b3o_{}", random_secret());
        sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) \
             VALUES ($1, 'simulation', $2, $3, $4)",
        )
        .bind(user_id)
        .bind(hash_secret(&token))
        .bind(&token[..12])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tokens.push(token);
    }
    tx.commit().await?;
    Ok(tokens)
}
