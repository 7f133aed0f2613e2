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
