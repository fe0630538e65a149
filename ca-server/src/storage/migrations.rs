//! The schema migrations of both backends, compiled into the binary.
//!
//! sqlx's `migrate!` macro would embed the same files, but it needs sqlx's `macros` feature, which
//! builds both database drivers (and SQLite's C library) a second time for the compiler's host:
//! minutes of every clean build and test run. The list below is what that macro made of the
//! directories; `the_embedded_migrations_are_the_directorys` checks it against them file by file,
//! so a migration added to `migrations/` and not here fails the tests. The checksums are sqlx's own
//! (`Migration::new`), so databases migrated by either agree.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// One migration file: its version, description (the file name's words) and SQL.
type File = (i64, &'static str, &'static str);

/// Makes both backends' lists from one list of `(version, "file name without .sql", "description")`:
/// the two directories hold files of the same names (the test checks each against its own).
macro_rules! files {
    ($(($version:literal, $name:literal, $description:literal)),+ $(,)?) => {
        const SQLITE: &[File] = &[$((
            $version,
            $description,
            include_str!(concat!("../../../migrations/sqlite/", $name, ".sql")),
        )),+];
        const POSTGRES: &[File] = &[$((
            $version,
            $description,
            include_str!(concat!("../../../migrations/postgres/", $name, ".sql")),
        )),+];
    };
}

files!(
    (1, "0001_initial", "initial"),
    (2, "0002_audit_seal", "audit seal"),
    (3, "0003_crl_last_modified", "crl last modified"),
    (4, "0004_crl_segments", "crl segments"),
    (5, "0005_infra_crl", "infra crl"),
    (6, "0006_relying_party_crl", "relying party crl"),
    (7, "0007_expirations", "expirations"),
    (8, "0008_ca_rollover", "ca rollover"),
    (9, "0009_audit_key_wrap", "audit key wrap"),
    (10, "0010_rows_kept_whole", "rows kept whole"),
);

/// A backend's compiled-in migrations, as a source for [`Migrator::new`].
#[derive(Debug)]
struct Embedded(&'static [File]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(std::future::ready(Ok(self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    // sqlx's rule for a migration run outside a transaction.
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect())))
    }
}

/// The SQLite schema's migrator.
pub(super) async fn sqlite() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(SQLITE)).await
}

/// The PostgreSQL schema's migrator.
pub(super) async fn postgres() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(POSTGRES)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What sqlx reads from a migrations directory (the same reading `migrate!` does at build time)
    /// is exactly the compiled-in list: every file, in order, with its description, checksum and
    /// transaction mode.
    #[tokio::test]
    async fn the_embedded_migrations_are_the_directorys() {
        for (dir, embedded) in [("sqlite", sqlite().await), ("postgres", postgres().await)] {
            let embedded = embedded.expect("embedded migrations");
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations")
                .join(dir);
            let from_dir = Migrator::new(path.as_path()).await.expect("migrations directory");
            let key = |m: &Migration| {
                (
                    m.version,
                    m.description.to_string(),
                    m.migration_type,
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            };
            let ours: Vec<_> = embedded.iter().map(key).collect();
            let theirs: Vec<_> = from_dir.iter().map(key).collect();
            assert_eq!(
                ours, theirs,
                "{dir}: the list in storage/migrations.rs and migrations/{dir} differ"
            );
            assert!(!ours.is_empty());
        }
    }
}
