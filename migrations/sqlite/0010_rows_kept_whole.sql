-- PostgreSQL's 0010 sets a storage parameter of its own (rows kept whole, uncompressed); SQLite
-- never compresses rows: nothing to change. Kept so both backends count their migrations alike.
SELECT 1;
