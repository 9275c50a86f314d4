//! Admission control of the inference routes: how much request body is held in memory, and how
//! much model work runs, at once. Without it one anonymous client could take gigabytes with a
//! few 16 MiB bodies, or queue unbounded work on the blocking pool.
//!
//! - **Body budget** (`--inference-body-budget-mb`): bytes of request bodies held across all
//!   inference requests. A body takes budget as its bytes *arrive* (not from its declared
//!   length, which a slow client could claim and never send), and gives it back when the
//!   request ends. A body past the route's limit is a 413 before more is read.
//! - **Work slots** (`--inference-concurrency`, default the cores): requests whose work is heavy
//!   (CSV, images, batches of rows) hold a slot while they parse and run; single rows go to the
//!   batcher without one (their cost is one row, and batching them is what makes them cheap).
//! - Waiting for either is bounded (`--inference-queue-timeout-ms`): then a 503 with
//!   `Retry-After`, never an unbounded queue.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::limits::Limits;

/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;

/// Shared admission state of one server.
#[derive(Debug)]
pub struct Admission {
    body_budget: Arc<Semaphore>,
    budget_units: usize,
    work: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// What a request holds while it runs: its body's share of the budget and, for heavy work, a
/// work slot. Dropped with the request.
#[derive(Debug, Default)]
pub struct Ticket {
    body: Vec<OwnedSemaphorePermit>,
    work: Option<OwnedSemaphorePermit>,
}

impl Admission {
    pub fn new(limits: &Limits) -> Self {
        let budget_units = (limits.inference_body_budget_bytes() / UNIT).max(1);
        Admission {
            body_budget: Arc::new(Semaphore::new(budget_units)),
            budget_units,
            work: Arc::new(Semaphore::new(limits.inference_concurrency().max(1))),
            queue_timeout: Duration::from_millis(limits.inference_queue_timeout_ms),
        }
    }

    fn busy(&self, what: &str) -> ApiError {
        ApiError::Unavailable {
            message: format!("the server is busy ({what}); try again shortly"),
            retry_after_secs: self.queue_timeout.as_secs().max(1),
        }
    }

    /// Reads `body` whole, up to `max` bytes (413 past it, before reading further), taking
    /// budget for the bytes as they arrive.
    pub async fn read_body(
        &self,
        body: Body,
        declared: Option<u64>,
        max: usize,
        ticket: &mut Ticket,
    ) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::PayloadTooLarge(format!(
                "the request body is larger than {max} bytes; send large CSV files as a batch job (POST /api/jobs)"
            ))
        };
        let mut stream = body.into_data_stream();
        if declared.is_some_and(|n| n > max as u64) {
            crate::limits::drain_refused(&mut stream).await;
            return Err(too_large());
        }
        // Chunks kept as they came and joined once at the end, at their real total: a growing
        // buffer would briefly hold up to three times the body while it reallocates.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut held_units = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
            total += chunk.len();
            if total > max {
                drop(chunks);
                crate::limits::drain_refused(&mut stream).await;
                return Err(too_large());
            }
            chunks.push(chunk);
            let need = total.div_ceil(UNIT).min(self.budget_units);
            if need > held_units {
                let more = u32::try_from(need - held_units).unwrap_or(u32::MAX);
                let permit = tokio::time::timeout(
                    self.queue_timeout,
                    self.body_budget.clone().acquire_many_owned(more),
                )
                .await
                .map_err(|_| self.busy("too many large requests in progress"))?
                .map_err(|_| self.busy("shutting down"))?;
                ticket.body.push(permit);
                held_units = need;
            }
        }
        Ok(match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.swap_remove(0),
            _ => {
                let mut out = Vec::with_capacity(total);
                for chunk in chunks {
                    out.extend_from_slice(&chunk);
                }
                Bytes::from(out)
            }
        })
    }

    /// Waits for a work slot (heavy requests), at most the queue timeout.
    pub async fn work_slot(&self, ticket: &mut Ticket) -> Result<(), ApiError> {
        if ticket.work.is_some() {
            return Ok(());
        }
        let permit = tokio::time::timeout(self.queue_timeout, self.work.clone().acquire_owned())
            .await
            .map_err(|_| self.busy("every inference slot is in use"))?
            .map_err(|_| self.busy("shutting down"))?;
        ticket.work = Some(permit);
        Ok(())
    }

    /// Work slots free now (tests, metrics).
    pub fn free_slots(&self) -> usize {
        self.work.available_permits()
    }
}

impl Ticket {
    /// Moves the work slot out, to be held by work that outlives the request (a blocking task
    /// that a timeout stopped waiting for keeps its slot until it really ends).
    pub fn take_work(&mut self) -> Option<OwnedSemaphorePermit> {
        self.work.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget_mb: usize, concurrency: usize) -> Limits {
        Limits {
            inference_body_budget_mb: budget_mb,
            inference_concurrency: concurrency,
            inference_queue_timeout_ms: 50,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn bodies_take_budget_as_they_arrive_and_give_it_back() {
        let a = Admission::new(&limits(1, 1));
        let mut t1 = Ticket::default();
        let big = Bytes::from(vec![b'x'; 900 * 1024]);
        let got = a
            .read_body(Body::from(big.clone()), None, 1 << 20, &mut t1)
            .await
            .unwrap();
        assert_eq!(got.len(), big.len());
        // 900 KiB of the 1 MiB budget are held: a second 900 KiB body waits, then gets a 503.
        let mut t2 = Ticket::default();
        let e = a
            .read_body(Body::from(big.clone()), None, 1 << 20, &mut t2)
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Unavailable { .. }), "{e:?}");
        drop(t1);
        let mut t3 = Ticket::default();
        assert!(
            a.read_body(Body::from(big), None, 1 << 20, &mut t3)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_by_declared_or_actual_length() {
        let a = Admission::new(&limits(64, 1));
        let mut t = Ticket::default();
        let e = a
            .read_body(Body::from("small"), Some(1 << 30), 1024, &mut t)
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::PayloadTooLarge(_)));
        let e = a
            .read_body(Body::from(vec![0u8; 2048]), None, 1024, &mut t)
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::PayloadTooLarge(_)));
    }

    #[tokio::test]
    async fn work_slots_are_bounded_and_time_out() {
        let a = Admission::new(&limits(64, 1));
        let mut t1 = Ticket::default();
        a.work_slot(&mut t1).await.unwrap();
        let mut t2 = Ticket::default();
        assert!(matches!(
            a.work_slot(&mut t2).await,
            Err(ApiError::Unavailable { .. })
        ));
        drop(t1);
        a.work_slot(&mut t2).await.unwrap();
        assert_eq!(a.free_slots(), 0);
    }
}
