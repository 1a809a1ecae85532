//! Where a path leads, entry by entry, and which preopens hold a folder on
//! the way: the file-system facts `check_preopens` decides on.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// A file or folder's device and inode numbers.
pub(super) type Id = (u64, u64);

pub(super) fn identity(path: &Path) -> Option<Id> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A preopen as the file system has it now.
#[derive(Clone, Debug)]
pub(super) struct Opened {
    /// Its grant, by index.
    pub(super) tenant: usize,
    /// Its place in the grant's `dirs`.
    pub(super) number: usize,
    pub(super) writable: bool,
    /// Its canonical path.
    pub(super) dir: PathBuf,
    pub(super) id: Id,
}

/// Where a path leads, as the file system has it now.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Reach {
    /// Each directory entry looked up on the way, as its folder's canonical
    /// path and its name (symlinks followed one at a time): a writable
    /// preopen that holds one can change where the path leads.
    pub(super) entries: Vec<PathBuf>,
    /// Where it ends: its canonical path (below its nearest existing
    /// folder, as written, when it does not exist yet).
    pub(super) end: PathBuf,
    /// The device and inode of every folder that holds an entry (at any
    /// depth), and of the end when it is a folder.
    pub(super) on_the_way: Vec<Id>,
    /// The device and inode of every folder that holds the end (at any
    /// depth), and of the end.
    pub(super) holding_end: Vec<Id>,
}

/// How many symlinks a path may go through (Linux's limit, ELOOP).
const MAX_SYMLINKS: usize = 40;

impl Reach {
    /// Follows `path` one entry at a time. Past an entry that is missing
    /// (or cannot be read, so catshost cannot reach what is below it
    /// either), the rest of the path is taken as written.
    pub(super) fn of(path: &Path) -> Self {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.into());
        // What is left to follow, last part first.
        let mut pending: Vec<Part> = Part::all(&path);
        let mut links = 0;
        let mut at = PathBuf::from("/");
        let mut entries = Vec::new();
        let mut exists = true;
        while let Some(part) = pending.pop() {
            let name = match part {
                Part::Root => {
                    at = PathBuf::from("/");
                    continue;
                }
                Part::Parent => {
                    at.pop();
                    continue;
                }
                Part::Name(name) => name,
            };
            let entry = at.join(name);
            entries.push(entry.clone());
            let meta = std::fs::symlink_metadata(&entry).ok().filter(|_| exists);
            let target = meta
                .as_ref()
                .filter(|m| m.file_type().is_symlink() && links < MAX_SYMLINKS)
                .and_then(|_| std::fs::read_link(&entry).ok());
            match target {
                Some(target) => {
                    links += 1;
                    pending.extend(Part::all(&target));
                }
                None => {
                    exists &= meta.is_some();
                    at = entry;
                }
            }
        }
        let mut reach = Reach {
            entries,
            end: at,
            ..Reach::default()
        };
        let mut on_the_way: BTreeSet<&Path> = BTreeSet::new();
        for entry in &reach.entries {
            on_the_way.extend(entry.parent().into_iter().flat_map(Path::ancestors));
        }
        if reach.end.is_dir() {
            on_the_way.insert(&reach.end);
        }
        reach.on_the_way = on_the_way.into_iter().filter_map(identity).collect();
        reach.holding_end = reach.end.ancestors().filter_map(identity).collect();
        reach
    }
}

/// A part of a path still to follow.
enum Part {
    Root,
    Parent,
    Name(std::ffi::OsString),
}

impl Part {
    /// The parts of `path`, last first.
    fn all(path: &Path) -> Vec<Part> {
        path.components()
            .rev()
            .filter_map(|part| match part {
                Component::RootDir => Some(Part::Root),
                Component::ParentDir => Some(Part::Parent),
                Component::Normal(name) => Some(Part::Name(name.to_owned())),
                Component::CurDir | Component::Prefix(_) => None,
            })
            .collect()
    }
}

/// The preopens, by canonical path and by device and inode.
pub(super) struct Index {
    pub(super) opened: Vec<Opened>,
    pub(super) by_dir: HashMap<PathBuf, Vec<usize>>,
    pub(super) by_id: HashMap<Id, Vec<usize>>,
}

impl Index {
    pub(super) fn new(opened: Vec<Opened>) -> Self {
        let mut by_dir: HashMap<PathBuf, Vec<usize>> = HashMap::new();
        let mut by_id: HashMap<Id, Vec<usize>> = HashMap::new();
        for (i, dir) in opened.iter().enumerate() {
            by_dir.entry(dir.dir.clone()).or_default().push(i);
            by_id.entry(dir.id).or_default().push(i);
        }
        Self {
            opened,
            by_dir,
            by_id,
        }
    }

    /// The preopens (by index, in order) that reach the path of `reach`:
    /// writable ones that hold an entry on the way or are a folder on it,
    /// read-only ones that hold where it ends.
    pub(super) fn reaching(&self, reach: &Reach) -> Vec<usize> {
        let mut found: BTreeSet<usize> = BTreeSet::new();
        let mut add = |found_here: Option<&Vec<usize>>, writable_only: bool| {
            for &i in found_here.into_iter().flatten() {
                if self.opened[i].writable || !writable_only {
                    found.insert(i);
                }
            }
        };
        for entry in &reach.entries {
            for folder in entry.ancestors() {
                add(self.by_dir.get(folder), true);
            }
        }
        for id in &reach.on_the_way {
            add(self.by_id.get(id), true);
        }
        for folder in reach.end.ancestors() {
            add(self.by_dir.get(folder), false);
        }
        for id in &reach.holding_end {
            add(self.by_id.get(id), false);
        }
        found.into_iter().collect()
    }
}
