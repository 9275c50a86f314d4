//! Wire types: jobs (see the module docs of `models::protocol`): batch inference over a CSV
//! (`/api/jobs`). The upload is multipart (`model`, then `file`) or a raw CSV body with
//! `?model=`; the result is CSV.

use serde::{Deserialize, Serialize};

/// Where a job stands: `queued -> running -> succeeded | failed` (a restart puts interrupted
/// jobs back to `queued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// The status as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    /// The status named `s` (as stored), if any.
    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }

    /// Will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }
}

/// A batch job (`GET /api/jobs/{id}`, and the `202` answer to `POST /api/jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: i64,
    /// The deployment name the job runs through.
    pub model: String,
    /// The version it runs: the one the deployment served at submission.
    pub version_id: i64,
    pub status: JobStatus,
    /// The uploaded file's name.
    pub input_name: String,
    pub input_bytes: i64,
    /// Known once the job has read its whole file.
    #[serde(default)]
    pub rows_total: Option<i64>,
    #[serde(default)]
    pub rows_done: i64,
    /// 0 to 1 (1 when succeeded).
    #[serde(default)]
    pub progress: f64,
    /// Why it failed, naming the row and column when the input was at fault.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub attempts: i64,
    /// RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub started_at: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub finished_at: Option<String>,
    /// `GET` it for the predictions CSV (succeeded jobs only).
    #[serde(default)]
    pub result_url: Option<String>,
    #[serde(default)]
    pub result_bytes: Option<i64>,
}

/// `GET /api/jobs`: the caller's jobs, newest first (at most 500).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// `POST /api/jobs` as a multipart form: `model` first, then `file` (the file is read only
/// once its model is known). Documents the form; the server streams it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobForm {
    /// The deployment name (at most 256 bytes).
    pub model: String,
    /// The CSV; its file name is kept (cleaned) to name the result.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_media_type = "text/csv")
    )]
    pub file: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_stored_strings() {
        for s in ["queued", "running", "succeeded", "failed"] {
            let status = JobStatus::parse(s).unwrap();
            assert_eq!(serde_json::to_value(status).unwrap(), s);
        }
        assert_eq!(JobStatus::parse("cancelled"), None);
        assert!(JobStatus::Failed.is_final() && !JobStatus::Running.is_final());
    }
}
