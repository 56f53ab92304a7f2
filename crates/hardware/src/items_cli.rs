//! `hardware items …`: operating the inventory where the service runs.
//!
//! The same binary as the server, so it works in the distroless image:
//! `docker compose exec hardware hardware items …`,
//! `kubectl exec deploy/hardware -- hardware items …`, or natively. It talks
//! to the running service over its HTTP API (by default on this host's
//! `HARDWARE_LISTEN` port), with the admin token from the same
//! `ADMIN_TOKEN_FILE` the server reads, so every change goes through the
//! server's rules and write path and reaches every replica and the portal
//! within their usual refresh.
//!
//! `import` reads CSV (`provider,name` with a header; quoted fields, UTF-8,
//! a BOM and blank lines are fine) or the JSON array `GET /hardware/` returns,
//! sends the whole list in one request (the server works in batches, in one
//! transaction), and reports added / unchanged / removed / rejected with the
//! line (CSV) or item (JSON) of each rejection. Any rejection makes the
//! command fail; without `--partial` it also means nothing was applied.
//! `export` writes what `import` reads: export → import → export is the same bytes.

use crate::config::Settings;
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use url::Url;
use wire::{ImportRequest, ImportSummary, Item, ItemInput};

/// `hardware items`: the inventory, from the command line.
#[derive(Debug, Clone, Args)]
pub struct ItemsArgs {
    /// The hardware service to talk to (default: http://127.0.0.1 on this
    /// host's HARDWARE_LISTEN port).
    #[arg(long, env = "HARDWARE_API_URL")]
    pub url: Option<Url>,

    #[command(subcommand)]
    pub command: ItemsCommand,
}

/// What to do with the inventory.
#[derive(Debug, Clone, Subcommand)]
pub enum ItemsCommand {
    /// List every item with its availability (a table, or JSON).
    List {
        /// Print the JSON array `GET /hardware/` returns.
        #[arg(long)]
        json: bool,
    },
    /// Add one item.
    Add {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        name: String,
    },
    /// Change an item's provider and name.
    Set {
        id: u64,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        name: String,
    },
    /// Remove an item.
    Rm { id: u64 },
    /// Add the items a file lists (CSV `provider,name` with a header, or the
    /// JSON array `GET /hardware/` returns); `-` reads standard input.
    /// Re-importing the same file changes nothing.
    Import {
        /// The file, or `-` for standard input.
        file: String,
        /// The file's format (default: from its name, else from its first character).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove every item the file does not list.
        #[arg(long)]
        prune: bool,
        /// Apply the valid lines even when some are rejected.
        #[arg(long)]
        partial: bool,
    },
    /// Write the inventory to standard output (what `import` reads).
    Export {
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
}

/// File formats of `import` and `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// One item read from a file, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub items: Vec<ItemInput>,
    /// "line 7" / "item 3" for each of `items`.
    pub places: Vec<String>,
    /// Lines that could not be read at all: (place, reason).
    pub unreadable: Vec<(String, String)>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Which format `bytes` (named `file`) are in.
pub fn detect(file: &str, bytes: &[u8]) -> Format {
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".json") {
        return Format::Json;
    }
    if lower.ends_with(".csv") {
        return Format::Csv;
    }
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        _ => Format::Csv,
    }
}

/// Reads CSV: a `provider,name` header, then one item per line.
pub fn parse_csv(bytes: &[u8]) -> anyhow::Result<Parsed> {
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut parsed = Parsed {
        items: Vec::new(),
        places: Vec::new(),
        unreadable: Vec::new(),
    };
    let mut header_seen = false;
    let mut record = csv::ByteRecord::new();
    // Line numbers from byte offsets: the reader's own count is off by one
    // and more around blank lines and CRLF. Records come in order, so the
    // newlines are counted once, from the previous record on.
    let mut counted = (0usize, 1usize);
    let mut line_at = |position: Option<&csv::Position>| {
        let mut byte = position.map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
        // A record's position may point at the line ends (and blank lines) before it.
        while body.get(byte).is_some_and(|b| *b == b'\r' || *b == b'\n') {
            byte += 1;
        }
        let byte = byte.min(body.len());
        let (from, line) = counted;
        if byte >= from {
            let more = body[from..byte].iter().filter(|b| **b == b'\n').count();
            counted = (byte, line + more);
        }
        counted.1
    };
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                let line = line_at(err.position());
                parsed
                    .unreadable
                    .push((format!("line {line}"), format!("not valid CSV: {err}")));
                continue;
            }
        }
        let line = line_at(record.position());
        let place = format!("line {line}");
        // A blank line.
        if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
            continue;
        }
        let fields: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
        let Ok(fields) = fields else {
            parsed
                .unreadable
                .push((place, "is not UTF-8 text".to_owned()));
            continue;
        };
        if !header_seen {
            let header: Vec<String> = fields.iter().map(|f| f.trim().to_lowercase()).collect();
            if header != ["provider", "name"] {
                bail!(
                    "{place}: the first line must be the header `provider,name`, found `{}`",
                    fields.join(",")
                );
            }
            header_seen = true;
            continue;
        }
        if fields.len() != 2 {
            parsed.unreadable.push((
                place,
                format!("has {} fields; each line is `provider,name`", fields.len()),
            ));
            continue;
        }
        parsed.items.push(ItemInput {
            provider: fields[0].to_owned(),
            name: fields[1].to_owned(),
        });
        parsed.places.push(place);
    }
    if !header_seen {
        bail!("the file is empty: expected the header `provider,name`");
    }
    Ok(parsed)
}

/// Reads the JSON array `GET /hardware/` returns (only `provider` and `name` count).
pub fn parse_json(bytes: &[u8]) -> anyhow::Result<Parsed> {
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(body).context("the file is not a JSON array")?;
    let mut parsed = Parsed {
        items: Vec::new(),
        places: Vec::new(),
        unreadable: Vec::new(),
    };
    for (index, value) in values.iter().enumerate() {
        let place = format!("item {}", index + 1);
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
        match (field("provider"), field("name")) {
            (Some(provider), Some(name)) => {
                parsed.items.push(ItemInput {
                    provider: provider.to_owned(),
                    name: name.to_owned(),
                });
                parsed.places.push(place);
            }
            _ => parsed.unreadable.push((
                place,
                "needs string fields `provider` and `name`".to_owned(),
            )),
        }
    }
    Ok(parsed)
}

/// Writes `items` as `import` reads them.
pub fn export(items: &[Item], format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, items)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(out);
            writer.write_record(["provider", "name"])?;
            for item in items {
                writer.write_record([item.provider.as_bytes(), item.name.as_bytes()])?;
            }
            writer.flush()?;
        }
    }
    Ok(())
}

/// The service's base URL: `--url`, else loopback on the listen port.
fn base_url(args: &ItemsArgs, settings: &Settings) -> anyhow::Result<Url> {
    if let Some(url) = &args.url {
        return Ok(url.clone());
    }
    let ip = match settings.listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Url::parse(&format!("http://{host}:{}/", settings.listen.port()))
        .context("HARDWARE_API_URL (--url): cannot build the service URL")
}

/// Talks to the service; errors say what failed and what the service said.
struct Api {
    client: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    fn new(args: &ItemsArgs, settings: &Settings) -> anyhow::Result<Self> {
        let token = settings
            .admin_token()
            .map_err(anyhow::Error::from)?
            .map(|token| token.expose().to_owned());
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            client,
            base: base_url(args, settings)?,
            token,
        })
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("cannot join {path} to {}", self.base))
    }

    fn write(&self, builder: reqwest::RequestBuilder) -> anyhow::Result<reqwest::RequestBuilder> {
        let Some(token) = &self.token else {
            bail!("ADMIN_TOKEN_FILE (--admin-token-file) is not set: writes need the admin token");
        };
        Ok(builder.bearer_auth(token))
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("cannot reach the hardware service at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<wire::Problem>(&body)
            .map(|problem| problem.detail)
            .unwrap_or(body);
        bail!("the hardware service answered {status}: {detail}")
    }

    async fn items(&self) -> anyhow::Result<Vec<Item>> {
        let response = self
            .send(self.client.get(self.url("hardware/?wait=0")?))
            .await?;
        response
            .json()
            .await
            .context("the hardware service sent a list that is not JSON")
    }
}

fn progress(message: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = writeln!(err, "{message}");
    }
}

/// Reads FILE or standard input.
fn read_input(file: &str, stdin: &mut dyn Read) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if file == "-" {
        stdin
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    Ok(bytes)
}

/// Runs `hardware items …`, reading `stdin` for `import -` and writing what
/// it reports to `out` (rejections to `err`). An import with rejections is an
/// error after its summary is written.
pub async fn run(
    args: &ItemsArgs,
    settings: &Settings,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let api = Api::new(args, settings)?;
    match &args.command {
        ItemsCommand::List { json } => {
            let items = api.items().await?;
            if *json {
                return export(&items, Format::Json, out);
            }
            let width = |f: fn(&Item) -> usize, title: &str| {
                items.iter().map(f).max().unwrap_or(0).max(title.len())
            };
            let provider_width = width(|i| i.provider.chars().count(), "PROVIDER");
            let name_width = width(|i| i.name.chars().count(), "NAME");
            writeln!(
                out,
                "{:>6}  {:provider_width$}  {:name_width$}  AVAILABILITY",
                "ID", "PROVIDER", "NAME"
            )?;
            for item in &items {
                writeln!(
                    out,
                    "{:>6}  {:provider_width$}  {:name_width$}  {}",
                    item.id, item.provider, item.name, item.availability
                )?;
            }
            writeln!(out, "{} items", items.len())?;
        }
        ItemsCommand::Add { provider, name } => {
            let body = ItemInput {
                provider: provider.clone(),
                name: name.clone(),
            };
            let request = api.write(api.client.post(api.url("hardware/")?).json(&body))?;
            let item: Item = api.send(request).await?.json().await?;
            writeln!(out, "added {}: {} {}", item.id, item.provider, item.name)?;
        }
        ItemsCommand::Set { id, provider, name } => {
            let body = ItemInput {
                provider: provider.clone(),
                name: name.clone(),
            };
            let request = api.write(
                api.client
                    .put(api.url(&format!("hardware/{id}"))?)
                    .json(&body),
            )?;
            let item: Item = api.send(request).await?.json().await?;
            writeln!(out, "updated {}: {} {}", item.id, item.provider, item.name)?;
        }
        ItemsCommand::Rm { id } => {
            let request = api.write(api.client.delete(api.url(&format!("hardware/{id}"))?))?;
            api.send(request).await?;
            writeln!(out, "removed {id}")?;
        }
        ItemsCommand::Export { format } => {
            let items = api.items().await?;
            export(&items, *format, out)?;
        }
        ItemsCommand::Import {
            file,
            format,
            dry_run,
            prune,
            partial,
        } => {
            let started = Instant::now();
            let bytes = read_input(file, stdin)?;
            let format = format.unwrap_or_else(|| detect(file, &bytes));
            let parsed = match format {
                Format::Csv => parse_csv(&bytes)?,
                Format::Json => parse_json(&bytes)?,
            };
            progress(&format!(
                "read {} items from {file}; importing…",
                parsed.items.len()
            ));
            // Lines that cannot be read at all count as rejected: without
            // --partial, nothing is applied.
            let apply_nothing = !parsed.unreadable.is_empty() && !partial;
            let request = ImportRequest {
                items: parsed.items,
                prune: *prune,
                dry_run: *dry_run || apply_nothing,
                partial: *partial,
            };
            let call = api.write(api.client.post(api.url("hardware/import")?).json(&request))?;
            let summary: ImportSummary = api
                .send(call)
                .await?
                .json()
                .await
                .context("the hardware service sent a summary that is not JSON")?;
            let mut rejected: Vec<(String, String)> = parsed.unreadable;
            rejected.extend(summary.rejected.iter().map(|r| {
                let place = parsed
                    .places
                    .get(r.index)
                    .cloned()
                    .unwrap_or_else(|| format!("item {}", r.index + 1));
                (place, r.reason.clone())
            }));
            for (place, reason) in &rejected {
                writeln!(err, "{place}: {reason}")?;
            }
            let outcome = if summary.applied {
                "applied"
            } else if *dry_run {
                "dry run: nothing changed"
            } else {
                "nothing changed: fix the rejected lines or use --partial"
            };
            writeln!(
                out,
                "added {}, unchanged {}, removed {}, rejected {} ({outcome}; {:.1} s)",
                summary.added,
                summary.unchanged,
                summary.removed,
                rejected.len(),
                started.elapsed().as_secs_f64()
            )?;
            if !rejected.is_empty() {
                bail!("{} lines rejected", rejected.len());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_bom_blank_lines_and_utf8() {
        let text = "\u{feff}provider,name\r\n\"Amazon\",\"c5, large\"\r\n\r\nAzure,\"say \"\"hi\"\"\"\nÜber,Größe\n";
        let parsed = parse_csv(text.as_bytes()).expect("parses");
        assert_eq!(parsed.items.len(), 3);
        assert_eq!(parsed.items[0].name, "c5, large");
        assert_eq!(parsed.items[1].name, "say \"hi\"");
        assert_eq!(parsed.items[2].provider, "Über");
        assert_eq!(parsed.places, ["line 2", "line 4", "line 5"]);
        assert!(parsed.unreadable.is_empty());
    }

    #[test]
    fn unreadable_lines_are_reported_with_their_number() {
        let mut bytes = b"provider,name\nA,b,c\nA\n".to_vec();
        bytes.extend_from_slice(b"B,\xff\xfe\n");
        let parsed = parse_csv(&bytes).expect("parses");
        let places: Vec<&str> = parsed.unreadable.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(places, ["line 2", "line 3", "line 4"]);
        assert!(parsed.items.is_empty());
    }

    #[test]
    fn the_header_is_required() {
        assert!(parse_csv(b"Amazon,c5\n").is_err());
        assert!(parse_csv(b"").is_err());
        assert!(parse_csv(b" Provider , NAME \nA,b\n").is_ok());
    }

    #[test]
    fn json_is_the_list_endpoint_s_array() {
        let json = br#"[{"id":1,"provider":"Amazon","name":"c5","availability":"HIGH","checked_at":null},{"name":"x"}]"#;
        let parsed = parse_json(json).expect("parses");
        assert_eq!(parsed.items.len(), 1);
        assert_eq!(parsed.unreadable[0].0, "item 2");
        assert!(parse_json(b"{}").is_err());
    }

    #[test]
    fn the_format_comes_from_the_name_or_the_first_character() {
        assert_eq!(detect("x.JSON", b"provider"), Format::Json);
        assert_eq!(detect("x.csv", b"["), Format::Csv);
        assert_eq!(detect("-", b"\xEF\xBB\xBF  [{}]"), Format::Json);
        assert_eq!(detect("-", b"provider,name"), Format::Csv);
    }

    #[test]
    fn export_writes_what_import_reads() {
        let items = vec![Item {
            id: 1,
            provider: "A, Inc.".into(),
            name: "quote \" here".into(),
            availability: wire::Availability::Unknown,
            checked_at: None,
        }];
        let mut csv = Vec::new();
        export(&items, Format::Csv, &mut csv).expect("writes");
        assert_eq!(
            String::from_utf8_lossy(&csv),
            "provider,name\n\"A, Inc.\",\"quote \"\" here\"\n"
        );
        let back = parse_csv(&csv).expect("reads");
        assert_eq!(back.items[0].provider, "A, Inc.");
        assert_eq!(back.items[0].name, "quote \" here");
    }
}
