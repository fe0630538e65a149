//! The PostgreSQL database ca-bench was given: checked empty (or, with `--reset-database`, emptied)
//! before its CA is created there, and where its server processes run, for the CPU figures.

use sqlx::{Connection, PgConnection};

use ca_server::storage::{is_postgres_url, redact_url};

async fn connect(url: &str) -> Result<PgConnection, String> {
    if !is_postgres_url(url) {
        return Err(format!(
            "--database-url {}: not a postgresql:// URL",
            redact_url(url)
        ));
    }
    PgConnection::connect(url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact_url(url)))
}

/// Relations (tables, views, sequences...) in the schemas of users, those in `schema` and the others.
async fn relations(c: &mut PgConnection, schema: &str) -> Result<(i64, i64), String> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE n.nspname = $1), count(*) FILTER (WHERE n.nspname <> $1) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
           AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'",
    )
    .bind(schema)
    .fetch_one(c)
    .await
    .map_err(|e| e.to_string())
}

/// Makes sure the database is empty before ca-bench creates its CA in it: refuses a database holding
/// any table, view or sequence. With `reset`, a database whose only objects are in its current schema
/// (`public`, usually: where ca-server's migrations put the CA, e.g. a previous ca-bench run's) has
/// that schema dropped with everything in it and created again, empty; a database with objects in
/// other schemas is refused even then (it is not one dedicated to the benchmark).
pub async fn prepare(url: &str, reset: bool) -> Result<(), String> {
    let shown = redact_url(url);
    let mut c = connect(url).await?;
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let schema = schema.ok_or_else(|| format!("{shown}: no schema of the search_path exists"))?;
    let (here, elsewhere) = relations(&mut c, &schema).await?;
    if elsewhere > 0 {
        return Err(format!(
            "{shown} holds {elsewhere} tables, views or sequences outside schema {schema}: ca-bench \
             needs a database of its own (an empty one; see BENCHMARKS.md)"
        ));
    }
    if here > 0 && !reset {
        return Err(format!(
            "{shown} is not empty ({here} tables, views or sequences in schema {schema}): ca-bench \
             needs an empty database. If it is one dedicated to the benchmark (a previous run's CA, \
             say), add --reset-database to drop schema {schema} with everything in it first"
        ));
    }
    if here > 0 {
        println!(
            "--reset-database: dropping schema {schema} of {shown} ({here} relations) and creating it again"
        );
        let quoted: String = sqlx::query_scalar("SELECT quote_ident($1)")
            .bind(&schema)
            .fetch_one(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let mut tx = c.begin().await.map_err(|e| e.to_string())?;
        for sql in [
            format!("DROP SCHEMA {quoted} CASCADE"),
            format!("CREATE SCHEMA {quoted}"),
        ] {
            sqlx::raw_sql(&sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("--reset-database on {shown}: {e}"))?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    let _ = c.close().await;
    Ok(())
}

/// The PostgreSQL server's main process, when it runs on this machine and its processes are visible
/// here: the parent of this connection's backend.
pub async fn postmaster_pid(url: &str) -> Option<u32> {
    let mut c = connect(url).await.ok()?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .ok()?;
    // Looked up while the connection is open: the backend ends with it.
    let backend = u32::try_from(backend).ok();
    let parent = backend.and_then(crate::cpu::parent);
    let comm = |pid: Option<u32>| {
        pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
            .is_some_and(|c| c.trim() == "postgres")
    };
    let found = (comm(backend) && comm(parent)).then_some(parent).flatten();
    let _ = c.close().await;
    found
}
