//! Images: sdnbed's own binary as a `FROM scratch` image, and a user's Dockerfile directory,
//! both built by the engine's classic builder from a build context this module makes, and both
//! cached by content.
//!
//! Guarantees:
//! - A build context is a deterministic tar: entries sorted by path, owner 0:0, mtime 0, only
//!   the permission bits of each file kept. Its sha256 names the image (`…:<16 hex>`), so equal
//!   content gives an equal tag and a second call finds the tag and builds nothing; touching a
//!   file without changing it does not rebuild.
//! - The builtin image holds `/sdnbed` and, when the binary has an ELF interpreter
//!   (`PT_INTERP`: it is dynamically linked), the loader and every library `ldd` resolves, at
//!   the paths `ldd` prints, with `LD_LIBRARY_PATH` set to their directories. So a normal
//!   `cargo build` runs in the image; a static binary gets no libraries.
//!
//! Departures: `.dockerignore` is not read (the whole directory is the context); mtimes in the
//! built image are 0 (the price of a content-only cache key); `ldd` must be installed for a
//! dynamically linked binary (glibc's `libc-bin`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{Engine, EngineError, BUILTIN_ALIAS, IMAGE_LABEL};

/// Lines of build output a failed build's error keeps.
const TAIL_LINES: usize = 20;

/// One entry of a build context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextEntry {
    File { data: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: PathBuf },
}

/// A build context: paths relative to the context root, each with its entry. A `BTreeMap`, so
/// the tar's order is the paths' order.
pub type Context = BTreeMap<String, ContextEntry>;

/// The context as a deterministic tar (sorted, owner 0:0, mtime 0).
pub fn context_tar(ctx: &Context) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in ctx {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match entry {
            ContextEntry::File { data, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode & 0o7777);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())?;
            }
            ContextEntry::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode & 0o7777);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())?;
            }
            ContextEntry::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    b.into_inner()
}

/// `<repo>:<first 16 hex digits of sha256(tar)>`.
pub fn content_tag(repo: &str, tar: &[u8]) -> String {
    let digest = Sha256::digest(tar);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{repo}:{hex}")
}

/// The ELF interpreter (`PT_INTERP`) of an executable, e.g. `/lib64/ld-linux-x86-64.so.2`;
/// `None` for a statically linked or non-ELF file. Reads 32- and 64-bit, little- and big-endian.
pub fn elf_interpreter(elf: &[u8]) -> Option<String> {
    if elf.len() < 52 || &elf[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match elf[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match elf[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let int = |off: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(off..off + len)?;
        let mut v = 0u64;
        for i in 0..len {
            let b = if le { bytes[len - 1 - i] } else { bytes[i] };
            v = (v << 8) | u64::from(b);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(32, 8)?, int(54, 2)?, int(56, 2)?)
    } else {
        (int(28, 4)?, int(42, 2)?, int(44, 2)?)
    };
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize).ok()?;
        const PT_INTERP: u64 = 3;
        if int(ph, 4)? != PT_INTERP {
            continue;
        }
        let (off, size) = if wide {
            (int(ph + 8, 8)?, int(ph + 32, 8)?)
        } else {
            (int(ph + 4, 4)?, int(ph + 16, 4)?)
        };
        let bytes = elf.get(usize::try_from(off).ok()?..usize::try_from(off + size).ok()?)?;
        let s = bytes.split(|&b| b == 0).next()?;
        return String::from_utf8(s.to_vec()).ok().filter(|s| !s.is_empty());
    }
    None
}

/// The absolute paths of the shared objects `ldd` lists (libraries and the loader), in its
/// order. The vDSO (no path) is skipped; a library `ldd` cannot find is an error naming it.
pub fn parse_ldd(out: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        let path = if let Some((name, rhs)) = line.split_once("=>") {
            let rhs = rhs.trim();
            if rhs.starts_with("not found") {
                return Err(format!("{} not found", name.trim()));
            }
            rhs.split(" (").next().unwrap_or("").trim()
        } else if line.starts_with('/') {
            line.split(" (").next().unwrap_or("").trim()
        } else {
            continue; // linux-vdso.so.1, "statically linked"
        };
        if path.starts_with('/') && !paths.iter().any(|p: &PathBuf| p == Path::new(path)) {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

/// The context of the builtin image: `rootfs/sdnbed`, the shared objects at their paths under
/// `rootfs/`, and a Dockerfile that copies `rootfs/` to `/`.
pub fn builtin_context(exe: Vec<u8>, libs: &[(PathBuf, Vec<u8>)]) -> Context {
    let mut ctx = Context::new();
    ctx.insert(
        "rootfs/sdnbed".into(),
        ContextEntry::File {
            data: exe,
            mode: 0o755,
        },
    );
    let mut dirs: Vec<String> = Vec::new();
    for (path, data) in libs {
        let rel = path.to_string_lossy().trim_start_matches('/').to_string();
        ctx.insert(
            format!("rootfs/{rel}"),
            ContextEntry::File {
                data: data.clone(),
                mode: 0o755,
            },
        );
        if let Some(dir) = path.parent().map(|d| d.to_string_lossy().to_string()) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let mut dockerfile = String::from("FROM scratch\nCOPY rootfs/ /\n");
    if !dirs.is_empty() {
        dockerfile.push_str(&format!("ENV LD_LIBRARY_PATH={}\n", dirs.join(":")));
    }
    dockerfile.push_str(&format!(
        "LABEL {IMAGE_LABEL}=builtin\nENTRYPOINT [\"/sdnbed\"]\n"
    ));
    ctx.insert(
        "Dockerfile".into(),
        ContextEntry::File {
            data: dockerfile.into_bytes(),
            mode: 0o644,
        },
    );
    ctx
}

/// A directory, recursively, as a context (symlinks kept as links, not followed).
pub fn dir_context(dir: &Path) -> Result<Context, EngineError> {
    use std::os::unix::fs::PermissionsExt;
    let mut ctx = Context::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).map_err(|e| EngineError::io(&abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| EngineError::io(&abs, e))?;
            let rel = rel.join(entry.file_name());
            let abs = dir.join(&rel);
            let meta = std::fs::symlink_metadata(&abs).map_err(|e| EngineError::io(&abs, e))?;
            let key = rel.to_string_lossy().to_string();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&abs).map_err(|e| EngineError::io(&abs, e))?;
                ctx.insert(key, ContextEntry::Symlink { target });
            } else if meta.is_dir() {
                ctx.insert(key, ContextEntry::Dir { mode });
                todo.push(rel);
            } else if meta.is_file() {
                let data = std::fs::read(&abs).map_err(|e| EngineError::io(&abs, e))?;
                ctx.insert(key, ContextEntry::File { data, mode });
            } // sockets, fifos, devices: not part of a build context
        }
    }
    Ok(ctx)
}

/// The last `n` lines of build output, kept for a failed build's error.
#[derive(Debug, Default)]
struct Tail {
    lines: std::collections::VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }
}

/// How long a build may go without a line of output before it is taken for hung.
const BUILD_SILENCE: std::time::Duration = std::time::Duration::from_secs(300);

impl Engine {
    /// The image of sdnbed's own binary `exe`: FROM scratch, the binary at /sdnbed, and, when
    /// `exe` is dynamically linked, the shared libraries and loader it needs (from `ldd exe`)
    /// at their paths. Tagged `sdnbed-builtin:<16 hex of sha256 over the context>`, labelled
    /// `sdnbed.image=builtin`; a second call with the same binary builds nothing. Returns the
    /// tag. The image is also tagged [`BUILTIN_ALIAS`], so a researcher's Dockerfile can start
    /// `FROM sdnbed:builtin`. Older builtin images stay until `sdnbed clean --all`.
    pub fn builtin_image(&self, exe: &Path) -> Result<String, EngineError> {
        let data = std::fs::read(exe).map_err(|e| EngineError::io(exe, e))?;
        let mut libs = Vec::new();
        if let Some(interp) = elf_interpreter(&data) {
            let out = std::process::Command::new("ldd")
                .arg(exe)
                .output()
                .map_err(|e| EngineError::io("ldd", e))?;
            let libraries = |message: String| EngineError::Libraries {
                exe: exe.display().to_string(),
                message,
            };
            if !out.status.success() {
                return Err(libraries(format!(
                    "ldd failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let mut paths = parse_ldd(&String::from_utf8_lossy(&out.stdout)).map_err(libraries)?;
            if !paths.iter().any(|p| p == Path::new(&interp)) {
                paths.push(PathBuf::from(&interp));
            }
            for p in paths {
                let bytes = std::fs::read(&p).map_err(|e| EngineError::io(&p, e))?;
                libs.push((p, bytes));
            }
        }
        let ctx = builtin_context(data, &libs);
        let tar = context_tar(&ctx).map_err(|e| EngineError::io(exe, e))?;
        let tag = content_tag("sdnbed-builtin", &tar);
        if !self.image_exists(&tag)? {
            self.build_tar(&exe.display().to_string(), tar, &tag, None, &mut |_| {})?;
        }
        let (repo, alias) = BUILTIN_ALIAS.split_once(':').expect("repo:tag");
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(alias.to_string()),
        };
        self.block_on(self.docker().tag_image(&tag, Some(options)))
            .map_err(|e| EngineError::api(format!("image {tag}"), "tag", e))?;
        Ok(tag)
    }

    /// Builds `dir`'s Dockerfile (classic builder), tag `sdnbed-build:<16 hex of sha256 over
    /// the context tar>`, labelled `sdnbed.image=build`; `progress` gets each line of build
    /// output. A failed build's error carries the last lines of its output. It always asks the
    /// engine to build: the context alone does not say whether its `FROM` image changed
    /// (`sdnbed:builtin` does with every sdnbed binary), and the engine's layer cache makes an
    /// unchanged build a matter of milliseconds.
    pub fn build_image(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        let dockerfile = dir.join("Dockerfile");
        if !dockerfile.is_file() {
            return Err(EngineError::io(
                &dockerfile,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no Dockerfile"),
            ));
        }
        let ctx = dir_context(dir)?;
        let tar = context_tar(&ctx).map_err(|e| EngineError::io(dir, e))?;
        let tag = content_tag("sdnbed-build", &tar);
        let labels = HashMap::from([(IMAGE_LABEL.to_string(), "build".to_string())]);
        self.build_tar(
            &dir.display().to_string(),
            tar,
            &tag,
            Some(labels),
            progress,
        )?;
        Ok(tag)
    }

    /// Whether an image (tag or id) exists in the engine.
    pub fn image_exists(&self, reference: &str) -> Result<bool, EngineError> {
        match self.block_on(self.docker().inspect_image(reference)) {
            Ok(_) => Ok(true),
            Err(e) if super::status(&e) == Some(404) => Ok(false),
            Err(e) => Err(EngineError::api(format!("image {reference}"), "inspect", e)),
        }
    }

    /// The tags of the images sdnbed built (labelled `sdnbed.image`), sorted; for `sdnbed clean
    /// --all`. Every rebuild of sdnbed's binary adds a builtin image of its size, and nothing
    /// removes them but [`Engine::remove_images`].
    pub fn images(&self) -> Result<Vec<String>, EngineError> {
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![IMAGE_LABEL.to_string()],
            )])),
            ..Default::default()
        };
        let list = self
            .block_on(self.docker().list_images(Some(options)))
            .map_err(|e| EngineError::api("images labelled sdnbed.image", "list", e))?;
        let mut tags: Vec<String> = list
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t != "<none>:<none>")
            .collect();
        tags.sort();
        Ok(tags)
    }

    /// Removes the images (tags or ids); already gone is Ok. Not forced: an image that a
    /// container still uses is an error naming it (remove the containers first), so a run that
    /// is using an image, perhaps another worktree's, keeps it.
    pub fn remove_images(&self, references: &[String]) -> Result<(), EngineError> {
        for r in references {
            let options = bollard::query_parameters::RemoveImageOptions::default();
            match self.block_on(self.docker().remove_image(r, Some(options), None)) {
                Ok(_) => {}
                Err(e) if super::status(&e) == Some(404) => {}
                Err(e) => return Err(EngineError::api(format!("image {r}"), "remove", e)),
            }
        }
        Ok(())
    }

    fn build_tar(
        &self,
        context: &str,
        tar: Vec<u8>,
        tag: &str,
        labels: Option<HashMap<String, String>>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        let options = bollard::query_parameters::BuildImageOptions {
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            labels,
            version: bollard::query_parameters::BuilderVersion::BuilderV1,
            ..Default::default()
        };
        let mut tail = Tail::default();
        let mut partial = String::new();
        let result: Result<(), bollard::errors::Error> = self.block_on(async {
            let mut s =
                self.docker()
                    .build_image(options, None, Some(bollard::body_full(tar.into())));
            // A build that says nothing for BUILD_SILENCE is taken for hung (an engine that
            // lost a lock, as 20.10 has been seen to): an error, not a run that never starts.
            loop {
                let item = match tokio::time::timeout(BUILD_SILENCE, s.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(bollard::errors::Error::DockerStreamError {
                            error: format!(
                                "the engine sent nothing for {} s; the build is taken for hung",
                                BUILD_SILENCE.as_secs()
                            ),
                        })
                    }
                };
                let info = item?;
                if let Some(text) = info.stream {
                    partial.push_str(&text);
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        let line = line.trim_end();
                        progress(line);
                        tail.push(line);
                    }
                }
            }
            Ok(())
        });
        if !partial.is_empty() {
            progress(&partial);
            tail.push(&partial);
        }
        result.map_err(|e| EngineError::Build {
            context: context.to_string(),
            message: match e {
                bollard::errors::Error::DockerStreamError { error } => error,
                other => other.to_string(),
            },
            output: tail.lines.into_iter().collect(),
        })?;
        // The classic builder ends its stream without an error only after tagging; check, so a
        // truncated stream does not pass for a build.
        if !self.image_exists(tag)? {
            return Err(EngineError::Build {
                context: context.to_string(),
                message: format!("the build ended but {tag} does not exist"),
                output: Vec::new(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LDD: &str = "\tlinux-vdso.so.1 (0x00007ffc8a3f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f2b3c6a0000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f2b3c5c0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2b3c3df000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2b3d8f1000)
";

    #[test]
    fn ldd_lists_libraries_and_loader_but_not_the_vdso() {
        let paths = parse_ldd(LDD).unwrap();
        let want: Vec<PathBuf> = [
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(paths, want);
    }

    #[test]
    fn ldd_of_a_static_binary_lists_nothing() {
        assert_eq!(
            parse_ldd("\tstatically linked\n").unwrap(),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            parse_ldd("\tnot a dynamic executable\n").unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn ldd_missing_library_is_an_error_naming_it() {
        let out = "\tlibssl.so.3 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n";
        assert_eq!(parse_ldd(out).unwrap_err(), "libssl.so.3 not found");
    }

    #[test]
    fn ldd_old_format_without_path_is_skipped() {
        let out = "\tlinux-gate.so.1 =>  (0xb7f0e000)\n\tlibc.so.6 => /lib/libc.so.6 (0xb7d000)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            vec![PathBuf::from("/lib/libc.so.6")]
        );
    }

    /// A minimal little-endian ELF64 with one PT_LOAD and one PT_INTERP program header.
    fn elf64(interp: Option<&str>) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        let phnum: u16 = if interp.is_some() { 2 } else { 1 };
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        let data_off = 64 + 56 * u64::from(phnum);
        let mut load = vec![0u8; 56];
        load[..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f.extend(load);
        if let Some(i) = interp {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&3u32.to_le_bytes());
            ph[8..16].copy_from_slice(&data_off.to_le_bytes());
            ph[32..40].copy_from_slice(&(i.len() as u64 + 1).to_le_bytes());
            f.extend(ph);
            f.extend(i.as_bytes());
            f.push(0);
        }
        f
    }

    #[test]
    fn elf_interpreter_is_read_from_pt_interp() {
        let f = elf64(Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(
            elf_interpreter(&f).as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(elf_interpreter(&elf64(None)), None);
        assert_eq!(elf_interpreter(b"#!/bin/sh\necho not an elf\n"), None);
        assert_eq!(elf_interpreter(&f[..40]), None);
    }

    #[test]
    fn elf_interpreter_of_the_test_binary_matches_how_it_was_linked() {
        // This test binary is linked like sdnbed itself: dynamically unless built static.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let interp = elf_interpreter(&exe);
        if cfg!(target_feature = "crt-static") {
            assert_eq!(interp, None);
        } else {
            let interp = interp.expect("a dynamically linked test binary has PT_INTERP");
            assert!(Path::new(&interp).exists(), "{interp}");
        }
    }

    fn file(data: &[u8], mode: u32) -> ContextEntry {
        ContextEntry::File {
            data: data.to_vec(),
            mode,
        }
    }

    #[test]
    fn context_tar_is_deterministic_and_content_addressed() {
        let mut a = Context::new();
        a.insert("b.txt".into(), file(b"two", 0o644));
        a.insert("a.txt".into(), file(b"one", 0o100644));
        let t1 = context_tar(&a).unwrap();
        let t2 = context_tar(&a.clone()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(content_tag("x", &t1), content_tag("x", &t2));
        let tag = content_tag("sdnbed-build", &t1);
        let hex = tag.strip_prefix("sdnbed-build:").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));

        let mut changed = a.clone();
        changed.insert("b.txt".into(), file(b"TWO", 0o644));
        assert_ne!(
            content_tag("x", &context_tar(&changed).unwrap()),
            content_tag("x", &t1)
        );
        let mut chmod = a.clone();
        chmod.insert("b.txt".into(), file(b"two", 0o755));
        assert_ne!(
            content_tag("x", &context_tar(&chmod).unwrap()),
            content_tag("x", &t1)
        );

        // Sorted, owned by root, mtime 0, file type bits dropped from the mode.
        let mut ar = tar::Archive::new(t1.as_slice());
        let heads: Vec<(String, u32, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().to_string(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            heads,
            vec![
                ("a.txt".to_string(), 0o644, 0, 0),
                ("b.txt".to_string(), 0o644, 0, 0)
            ]
        );
    }

    #[test]
    fn dir_context_hash_ignores_mtime_but_not_content() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), "hello").unwrap();
        std::fs::set_permissions(d.path().join("sub"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("sub/f", d.path().join("link")).unwrap();
        let ctx = dir_context(d.path()).unwrap();
        let keys: Vec<&str> = ctx.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Dockerfile", "link", "sub", "sub/f"]);
        assert_eq!(
            ctx["link"],
            ContextEntry::Symlink {
                target: "sub/f".into()
            }
        );
        let tag = content_tag("t", &context_tar(&ctx).unwrap());

        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("sub/f"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7))
            .unwrap();
        let again = content_tag("t", &context_tar(&dir_context(d.path()).unwrap()).unwrap());
        assert_eq!(again, tag, "a touched file does not change the tag");

        std::fs::write(d.path().join("sub/f"), "hello!").unwrap();
        let edited = content_tag("t", &context_tar(&dir_context(d.path()).unwrap()).unwrap());
        assert_ne!(edited, tag);
    }

    #[test]
    fn builtin_context_places_libraries_and_sets_their_path() {
        let libs = vec![
            (
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                b"libc".to_vec(),
            ),
            (PathBuf::from("/lib64/ld-linux-x86-64.so.2"), b"ld".to_vec()),
        ];
        let ctx = builtin_context(b"exe".to_vec(), &libs);
        let keys: Vec<&str> = ctx.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "Dockerfile",
                "rootfs/lib/x86_64-linux-gnu/libc.so.6",
                "rootfs/lib64/ld-linux-x86-64.so.2",
                "rootfs/sdnbed"
            ]
        );
        let ContextEntry::File { data, .. } = &ctx["Dockerfile"] else {
            panic!("Dockerfile is a file")
        };
        let df = String::from_utf8(data.clone()).unwrap();
        assert!(df.starts_with("FROM scratch\n"), "{df}");
        assert!(
            df.contains("ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/lib64\n"),
            "{df}"
        );
        assert!(df.contains("LABEL sdnbed.image=builtin\n"), "{df}");
        assert!(df.contains("ENTRYPOINT [\"/sdnbed\"]"), "{df}");

        let static_ctx = builtin_context(b"exe".to_vec(), &[]);
        let ContextEntry::File { data, .. } = &static_ctx["Dockerfile"] else {
            panic!("Dockerfile is a file")
        };
        assert!(!String::from_utf8_lossy(data).contains("LD_LIBRARY_PATH"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..(TAIL_LINES + 5) {
            t.push(&format!("line {i}"));
        }
        assert_eq!(t.lines.len(), TAIL_LINES);
        assert_eq!(t.lines.front().unwrap(), "line 5");
        assert_eq!(t.lines.back().unwrap(), &format!("line {}", TAIL_LINES + 4));
    }
}
