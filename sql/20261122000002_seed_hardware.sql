-- The seed rows of the original exercise, so a fresh deployment shows
-- something and clients of the old service see the items they expect.
INSERT INTO hardware (provider, name) VALUES
    ('Amazon', 'c5'),
    ('Azure', 'H16mr');
