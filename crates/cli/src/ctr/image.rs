//! `codex-ctr image ...`: parse, call the image store, print.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use codex_engine::engine::Engine;
use codex_engine::image::{
    Credentials, ImageFilter, LoadOptions, Platform, PullOptions, PushOptions, SaveFormat,
    Transport, DEFAULT_MAX_UNPACKED,
};

use crate::oci::commands::print_table;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a directory or a tar (.gz, .zst) as NAME[:TAG].
    Import {
        /// A root filesystem: a directory, or a tar (plain, gzip or zstd).
        source: PathBuf,
        /// The new image's NAME[:TAG] (tag latest by default; moved if it names another).
        reference: String,
    },
    /// Load the images of an OCI layout (directory or tar) or a docker archive
    /// (`docker save`), plain, gzip or zstd.
    Load {
        /// The archive or layout directory; `-` reads an archive from stdin.
        #[arg(short, long, default_value = "-")]
        input: PathBuf,
        /// OS/ARCH[/VARIANT] to pick from a multi-platform index (default: the host's).
        #[arg(long)]
        platform: Option<String>,
        /// The most one layer (or the archive) may unpack to: 512m, 20g (default 32g).
        #[arg(long = "max-unpacked-size")]
        max_unpacked_size: Option<String>,
        /// Only the loaded images' ids, one a line.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from an OCI distribution registry.
    Pull(PullArgs),
    /// Push an image to an OCI distribution registry.
    Push(PushArgs),
    /// Build an image from a Dockerfile (as `build`).
    Build(super::build::BuildArgs),
    /// List images (one row per reference; dangling ones as <none>).
    #[command(alias = "list")]
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Only the images' short ids, one a line.
        #[arg(short, long)]
        quiet: bool,
        /// dangling=true|false, reference=PATTERN, label=KEY[=VALUE] (repeatable).
        #[arg(short, long)]
        filter: Vec<String>,
    },
    /// Remove image references (an image goes with its last one; refused while a
    /// container uses it).
    #[command(alias = "remove")]
    Rm {
        /// Images to remove: NAME[:TAG], or an id (then every reference to it).
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove dangling images no container uses (-a: every image no container uses).
    Prune {
        /// Every image no container uses, named or not.
        #[arg(short, long)]
        all: bool,
    },
    /// Make TARGET name the image SOURCE names.
    Tag {
        /// The image: NAME[:TAG] or an id.
        source: String,
        /// The new NAME[:TAG] for it (moved if it named another image).
        target: String,
    },
    /// Images as JSON: the record and the image's OCI config.
    Inspect {
        /// Images to show (NAME[:TAG] or ids).
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// The steps that made an image, bottom first, and their layers.
    History {
        /// The image: NAME[:TAG] or an id.
        reference: String,
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Write images to an archive: an OCI layout tar, or a docker archive.
    Save {
        /// The file to write (`-`: stdout).
        #[arg(short, long)]
        output: PathBuf,
        /// oci-archive (an OCI layout tar) or docker-archive (for `docker load`).
        #[arg(long, default_value = "oci-archive", value_parser = ["oci-archive", "docker-archive"])]
        format: String,
        /// Images to save (NAME[:TAG] or ids).
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// How to reach a registry (pull and push).
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Accept an unverified certificate, or plain HTTP when the registry has no TLS.
    #[arg(long)]
    pub insecure: bool,
    /// USER:PASSWORD (default: what `codex-ctr login` stored for the registry).
    #[arg(long)]
    pub creds: Option<String>,
    /// The per-registry CA dir (DIR/HOST[:PORT]/*.crt; default $CODEX_REGISTRY_CERTS_DIR,
    /// else /etc/docker/certs.d).
    #[arg(long = "cert-dir")]
    pub cert_dir: Option<PathBuf>,
}

impl RegistryArgs {
    fn creds(&self) -> Result<Option<Credentials>> {
        let Some(c) = &self.creds else {
            return Ok(None);
        };
        let (u, p) = c
            .split_once(':')
            .ok_or_else(|| codex_engine::Error::invalid("creds", "expected USER:PASSWORD"))?;
        Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }))
    }

    fn transport(&self) -> Transport {
        Transport {
            insecure: self.insecure,
            certs_dir: self.cert_dir.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// OS/ARCH[/VARIANT] to pick from a multi-platform image (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The most one layer may unpack to: 512m, 20g (default 32g).
    #[arg(long = "max-unpacked-size")]
    pub max_unpacked_size: Option<String>,
    /// Only the pulled image's id.
    #[arg(short, long)]
    pub quiet: bool,
    /// The image to pull: [REGISTRY/]NAME[:TAG].
    pub reference: String,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Only the pushed manifest's digest.
    #[arg(short, long)]
    pub quiet: bool,
    /// The image to push: [REGISTRY/]NAME[:TAG], or an id when DESTINATION is given.
    pub source: String,
    /// Where to push it (default: SOURCE).
    pub destination: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The user name at the registry.
    #[arg(short, long)]
    pub username: String,
    /// Read the password from stdin (the only way: never on the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// The registry: host[:port].
    pub registry: String,
}

fn load_options(platform: Option<&str>, max: Option<&str>) -> Result<LoadOptions> {
    Ok(LoadOptions {
        platform: platform.map(Platform::parse).transpose()?,
        max_unpacked: match max {
            Some(s) => codex_engine::config::parse_memory("max-unpacked-size", s)?,
            None => DEFAULT_MAX_UNPACKED,
        },
    })
}

pub fn pull(eng: &Engine, a: PullArgs) -> Result<i32> {
    let opts = PullOptions {
        load: load_options(a.platform.as_deref(), a.max_unpacked_size.as_deref())?,
        transport: a.registry.transport(),
        creds: a.registry.creds()?,
        progress: super::progress::sink(a.quiet),
    };
    let loaded = eng.images()?.pull(&a.reference, &opts)?;
    if a.quiet {
        println!("sha256:{}", loaded.id);
    } else {
        println!("Pulled {}: sha256:{}", a.reference, loaded.id);
    }
    Ok(0)
}

pub fn push(eng: &Engine, a: PushArgs) -> Result<i32> {
    let opts = PushOptions {
        transport: a.registry.transport(),
        creds: a.registry.creds()?,
    };
    let pushed = eng
        .images()?
        .push(&a.source, a.destination.as_deref(), &opts)?;
    if a.quiet {
        println!("{}", pushed.digest);
        return Ok(0);
    }
    for (digest, uploaded) in &pushed.blobs {
        let what = if *uploaded { "Pushed" } else { "Exists" };
        println!("{what} {digest}");
    }
    println!("Pushed {}: {}", pushed.reference, pushed.digest);
    Ok(0)
}

pub fn login(a: LoginArgs) -> Result<i32> {
    use std::io::Read;
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(codex_engine::Error::invalid("password", "empty password on stdin").into());
    }
    let creds = Credentials {
        username: a.username,
        password,
    };
    let path = codex_engine::image::pull::creds::store(&a.registry, &creds)?;
    println!("Login stored for {} in {}", a.registry, path.display());
    Ok(0)
}

pub fn image(eng: &Engine, cmd: ImageCommand) -> Result<i32> {
    let store = eng.images()?;
    match cmd {
        ImageCommand::Import { source, reference } => {
            let img = store.import(&source, &reference)?;
            println!("{}", img.id);
        }
        ImageCommand::Load {
            input,
            platform,
            max_unpacked_size,
            quiet,
        } => {
            let opts = load_options(platform.as_deref(), max_unpacked_size.as_deref())?;
            let loaded = if input.as_os_str() == "-" {
                store.load_stream(std::io::stdin().lock(), &opts)?
            } else {
                store.load(&input, &opts)?
            };
            for l in &loaded {
                if quiet {
                    println!("sha256:{}", l.id);
                } else if l.references.is_empty() {
                    println!("Loaded image ID: sha256:{}", l.id);
                } else {
                    for r in &l.references {
                        println!("Loaded image: {r}");
                    }
                }
            }
        }
        ImageCommand::Pull(a) => return pull(eng, a),
        ImageCommand::Push(a) => return push(eng, a),
        ImageCommand::Build(a) => return super::build::build(eng, a),
        ImageCommand::Ls {
            format,
            quiet,
            filter,
        } => {
            let filter = ImageFilter::parse(&filter)?;
            let refs = store.references()?;
            let refs_of = |id: &str| -> Vec<String> {
                refs.iter()
                    .filter(|(_, v)| v.as_str() == id)
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let imgs: Vec<_> = store
                .list()?
                .into_iter()
                .filter(|i| filter.matches(i, &refs_of(&i.id)))
                .collect();
            if format == "json" {
                println!("{}", serde_json::to_string(&imgs)?);
                return Ok(0);
            }
            if quiet {
                for i in &imgs {
                    println!("{}", i.short_id());
                }
                return Ok(0);
            }
            let mut rows = vec![["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"]
                .map(String::from)
                .to_vec()];
            for i in &imgs {
                let mine: Vec<(String, String)> = refs
                    .iter()
                    .filter(|(_, id)| **id == i.id)
                    .filter_map(|(r, _)| codex_engine::image::Reference::parse(r).ok())
                    .map(|r| (r.name, r.tag))
                    .collect();
                let names = if mine.is_empty() {
                    vec![("<none>".to_string(), "<none>".to_string())]
                } else {
                    mine
                };
                for (name, tag) in names {
                    rows.push(vec![
                        name,
                        tag,
                        i.short_id().to_string(),
                        i.created.clone(),
                        super::listing::human(i.size),
                    ]);
                }
            }
            print_table(&rows);
        }
        ImageCommand::Rm { references } => {
            for r in &references {
                let removal = eng.remove_image(r)?;
                for t in &removal.untagged {
                    println!("Untagged: {t}");
                }
                for d in &removal.deleted {
                    println!("Deleted: sha256:{d}");
                }
            }
        }
        ImageCommand::Prune { all } => {
            let removal = eng.prune_images(all)?;
            for d in &removal.deleted {
                println!("Deleted: sha256:{d}");
            }
            println!("Layers removed: {}", removal.layers.len());
        }
        ImageCommand::Tag { source, target } => {
            store.tag(&source, &target)?;
        }
        ImageCommand::Inspect { references } => {
            let mut out = Vec::new();
            for r in &references {
                let rec = store.get(r)?;
                let config = store.config_json(&rec)?;
                let mut v = serde_json::to_value(&rec)?;
                v["image_config"] = config;
                v["references"] = serde_json::json!(store
                    .references()?
                    .into_iter()
                    .filter(|(_, id)| *id == rec.id)
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>());
                out.push(v);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::History { reference, format } => {
            let rec = store.get(&reference)?;
            let hist = store.history(&rec)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&hist)?);
            } else {
                let mut rows = vec![["CREATED", "CREATED BY", "LAYER", "COMMENT"]
                    .map(String::from)
                    .to_vec()];
                for h in hist.iter().rev() {
                    rows.push(vec![
                        h.created.clone().unwrap_or_default(),
                        h.created_by.clone().unwrap_or_default(),
                        h.layer.as_deref().map_or("<missing>".to_string(), |l| {
                            l.trim_start_matches("sha256:").chars().take(12).collect()
                        }),
                        h.comment.clone().unwrap_or_default(),
                    ]);
                }
                print_table(&rows);
            }
        }
        ImageCommand::Save {
            output,
            format,
            references,
        } => {
            let format: SaveFormat = format.parse()?;
            if output.as_os_str() == "-" {
                let stdout = std::io::stdout();
                let mut lock = stdout.lock();
                store.save_to(&references, format, &mut lock)?;
            } else {
                store.save(&references, format, &output)?;
            }
        }
    }
    Ok(0)
}
