-- Rate limits shared by every replica (issue #15): sign-in failures, wrong join codes and
-- registrations, one row per counted event or per attempt still being checked (`pending` = 1,
-- counted as a failure to come until it resolves or `at_ms` is a minute old). `at_ms` is Unix
-- milliseconds. Rows older than their limiter's window are deleted as new ones arrive.
CREATE TABLE rate_limit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    bucket TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    pending INTEGER NOT NULL
);
CREATE INDEX rate_limit_events_bucket ON rate_limit_events (scope, bucket, at_ms);
CREATE INDEX rate_limit_events_age ON rate_limit_events (scope, at_ms);
