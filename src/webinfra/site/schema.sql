-- Schema of the message board ("the site").
-- Applied by webinfra's DB bootstrap as the admin user, with the site database
-- already selected: this file never names or selects a database itself.
-- Idempotent: re-running it on an existing database changes nothing.
CREATE TABLE IF NOT EXISTS entries (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  text TEXT NOT NULL,
  author_host VARCHAR(64) NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- Exactly-once writes: the result of each POST that carried an Idempotency-Key, written in the same
-- transaction as its entry, so a retry (on any app server, through any primary, across a failover) finds
-- it and answers with the first result instead of inserting again. The key is case-sensitive (ascii_bin);
-- text_sha256 tells a retry from a different request reusing the key. Rows are kept (about 200 bytes each).
CREATE TABLE IF NOT EXISTS idempotency_keys (
  idem_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  entry_id BIGINT UNSIGNED NOT NULL,
  text_sha256 BINARY(32) NOT NULL,
  author_host VARCHAR(64) NOT NULL,
  created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
