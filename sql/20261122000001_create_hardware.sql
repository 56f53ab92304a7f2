-- The inventory: one row per piece of hardware a provider offers.
--
-- Availability is NOT stored here: it comes from a slow external process and
-- lives in the hardware service's availability engine (and optionally Redis).
-- Keeping it out of the table means reads never wait on it and writes never
-- race with it.
--
-- Append-only: once applied anywhere, this file never changes (sqlx checks a
-- checksum). Schema changes go into a new, later migration.
CREATE TABLE hardware (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    provider VARCHAR(64) NOT NULL,
    name VARCHAR(128) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- Bumped on every update; part of the fingerprint replicas poll to notice
    -- changes made through another replica.
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    -- Case-insensitive collation: "Amazon c5" and "amazon C5" are the same item.
    UNIQUE KEY hardware_provider_name (provider, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
