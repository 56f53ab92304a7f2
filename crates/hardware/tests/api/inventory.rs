//! `hardware items …` against the real service on a real MariaDB: import
//! (CSV and JSON), its rejections, dry runs, pruning, idempotence, export.

use crate::helpers::{Options, TOKEN, TempDir, TestApp, spawn_app};
use clap::Parser;
use hardware::config::{Cli, Command};
use sqlx::MySqlPool;

/// What one `hardware items …` call did.
struct Outcome {
    ok: Result<(), String>,
    out: String,
    err: String,
}

struct Operator {
    token_dir: TempDir,
    url: String,
}

impl Operator {
    fn new(app: &TestApp) -> Self {
        let token_dir = TempDir::new("cli-token");
        std::fs::write(token_dir.0.join("admin-token"), format!("{TOKEN}\n")).expect("token");
        Self {
            token_dir,
            url: app.url("/"),
        }
    }

    async fn run(&self, args: &[&str], stdin: &[u8]) -> Outcome {
        let token = format!(
            "--admin-token-file={}",
            self.token_dir.0.join("admin-token").display()
        );
        let mut argv = vec!["hardware", &token, "items", "--url", &self.url];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("valid command line");
        let Some(Command::Items(items)) = cli.command else {
            panic!("an items command");
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ok =
            hardware::items_cli::run(&items, &cli.settings, &mut &stdin[..], &mut out, &mut err)
                .await
                .map_err(|e| format!("{e:#}"));
        Outcome {
            ok,
            out: String::from_utf8_lossy(&out).into_owned(),
            err: String::from_utf8_lossy(&err).into_owned(),
        }
    }

    async fn export(&self) -> String {
        let done = self.run(&["export"], b"").await;
        assert!(done.ok.is_ok(), "{:?}", done.ok);
        done.out
    }
}

const MESSY: &str = "\u{feff}provider,name\r\n\
\"Amazon\",\"c5, large\"\r\n\
\r\n\
Azure,\"say \"\"hi\"\"\"\r\n\
Über,Größe\r\n\
Azure,\"say \"\"hi\"\"\"\r\n\
Google, padded\r\n\
Oracle,a,b\r\n\
GCP,n2\r\n";

#[sqlx::test(migrations = "../../sql")]
async fn a_messy_csv_is_reported_by_line_and_applied_whole_or_not_at_all(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let operator = Operator::new(&app);
    let before = operator.export().await;

    let refused = operator.run(&["import", "-"], MESSY.as_bytes()).await;
    assert!(refused.ok.is_err(), "rejections fail the command");
    assert!(
        refused
            .err
            .contains("line 7: name must not start or end with white space"),
        "{}",
        refused.err
    );
    assert!(
        refused.err.contains("line 8: has 3 fields"),
        "{}",
        refused.err
    );
    assert!(refused.out.contains("rejected 2"), "{}", refused.out);
    assert!(refused.out.contains("nothing changed"), "{}", refused.out);
    assert_eq!(operator.export().await, before, "nothing half-applied");

    let partial = operator
        .run(&["import", "-", "--partial"], MESSY.as_bytes())
        .await;
    assert!(partial.ok.is_err(), "still a failure: lines were rejected");
    // Four distinct valid items; the repeated line changes nothing.
    assert!(
        partial
            .out
            .contains("added 4, unchanged 1, removed 0, rejected 2 (applied"),
        "{}",
        partial.out
    );
    let names: Vec<String> = app
        .list("/hardware/")
        .await
        .into_iter()
        .map(|i| i.name.to_string())
        .collect();
    for name in ["c5, large", "say \"hi\"", "Größe", "n2", "c5", "H16mr"] {
        assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
    }

    let again = operator
        .run(&["import", "-", "--partial"], MESSY.as_bytes())
        .await;
    assert!(
        again.out.contains("added 0, unchanged 5, removed 0"),
        "re-importing changes nothing: {}",
        again.out
    );
}

#[sqlx::test(migrations = "../../sql")]
async fn dry_run_prune_and_a_byte_identical_round_trip(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let operator = Operator::new(&app);
    let file = "provider,name\nAmazon,c5\nHetzner,\"CX22, shared\"\nHetzner,CCX13\n";

    let dry = operator
        .run(&["import", "-", "--prune", "--dry-run"], file.as_bytes())
        .await;
    assert!(dry.ok.is_ok(), "{:?} {}", dry.ok, dry.err);
    assert!(
        dry.out
            .contains("added 2, unchanged 1, removed 1, rejected 0 (dry run"),
        "{}",
        dry.out
    );
    assert_eq!(
        app.list("/hardware/").await.len(),
        2,
        "a dry run changes nothing"
    );

    let done = operator
        .run(&["import", "-", "--prune"], file.as_bytes())
        .await;
    assert!(done.ok.is_ok(), "{:?}", done.ok);
    assert!(
        done.out.contains("added 2, unchanged 1, removed 1"),
        "{}",
        done.out
    );
    let exported = operator.export().await;
    assert_eq!(
        exported, file,
        "export writes exactly what was imported, in id order"
    );

    // Export → import → export: the same bytes, nothing changed.
    let back = operator.run(&["import", "-"], exported.as_bytes()).await;
    assert!(back.out.contains("added 0, unchanged 3"), "{}", back.out);
    assert_eq!(operator.export().await, exported);

    // The JSON export is an import file too.
    let json = operator.run(&["export", "--format", "json"], b"").await.out;
    let from_json = operator.run(&["import", "-"], json.as_bytes()).await;
    assert!(
        from_json.out.contains("added 0, unchanged 3"),
        "{}",
        from_json.out
    );
}

#[sqlx::test(migrations = "../../sql")]
async fn single_item_commands_and_their_errors(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let operator = Operator::new(&app);
    let added = operator
        .run(&["add", "--provider", "Hetzner", "--name", "CX22"], b"")
        .await;
    assert!(added.ok.is_ok(), "{:?}", added.ok);
    let id: u64 = added
        .out
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.trim_end_matches(':').parse().ok())
        .expect("the new id");
    let renamed = operator
        .run(
            &[
                "set",
                &id.to_string(),
                "--provider",
                "Hetzner",
                "--name",
                "CX32",
            ],
            b"",
        )
        .await;
    assert!(renamed.ok.is_ok(), "{:?}", renamed.ok);
    let listed = operator.run(&["list"], b"").await;
    assert!(
        listed.out.contains("CX32") && listed.out.contains("3 items"),
        "{}",
        listed.out
    );
    let duplicate = operator
        .run(&["add", "--provider", "hetzner", "--name", "cx32"], b"")
        .await;
    let why = duplicate.ok.expect_err("a duplicate is refused");
    assert!(why.contains("409"), "{why}");
    assert!(operator.run(&["rm", &id.to_string()], b"").await.ok.is_ok());
    let gone = operator.run(&["rm", &id.to_string()], b"").await;
    assert!(gone.ok.expect_err("already gone").contains("404"));
}
