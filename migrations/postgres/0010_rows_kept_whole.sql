-- Certificate and request rows (a DER that does not compress, a status object of a few hundred
-- bytes) are kept whole in their heap page, uncompressed: PostgreSQL tries to compress a row longer
-- than 2032 bytes by default, which these rows are, and `pglz_compress` was PostgreSQL's busiest
-- function while certificates were signed (BENCHMARKS.md, session 18). Rows stay far below 8160.
ALTER TABLE certificates SET (toast_tuple_target = 8160);
ALTER TABLE requests SET (toast_tuple_target = 8160);
