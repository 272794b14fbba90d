//! The observer: a read-only view of another process's session.

use crate::layout::{self, FieldEntry, Header, ObjectEntry, RegionHeader, TypeEntry};
use crate::seqlock::{load_relaxed, protocol, RawCell, READ_ATTEMPTS};
use crate::session::{self, Liveness, SessionInfo};
use crate::shm::{self, Dir, Mapping};
use crate::types::{
    Atomicity, FieldInfo, ObjectId, ObjectInfo, ObjectState, Primitive, Semantics, TypeInfo,
};
use crate::value::Value;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Settings of an [`Observer`].
#[derive(Clone, Debug)]
pub struct ObserverOptions {
    /// Segment directory; default [`crate::default_dir`].
    pub dir: Option<PathBuf>,
    /// Uid that must own the directory and segments; default our own
    /// (set it to observe another user's group-readable session).
    pub owner: Option<u32>,
    /// Bound on the attempts of one seqlock read before it is reported
    /// torn ([`Error::Torn`]); default 10 000.
    pub read_attempts: u32,
}

impl Default for ObserverOptions {
    fn default() -> Self {
        ObserverOptions { dir: None, owner: None, read_attempts: READ_ATTEMPTS }
    }
}

/// A consistent copy of one object: every field value, seqlock groups each
/// read in one consistent pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The object.
    pub object: ObjectInfo,
    /// (path, value) in field order; array objects prefix `[i].`.
    pub values: Vec<(String, Value)>,
}

impl Snapshot {
    /// The value at `path`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.values.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }
}

/// What happened to an object.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeKind {
    /// The object appeared (or was first seen by this observer).
    Created,
    /// The object was destroyed.
    Destroyed,
    /// A field changed.
    Field {
        /// Dotted path (`[i].` prefixed for arrays).
        path: String,
        /// Value before.
        old: Value,
        /// Value now.
        new: Value,
    },
}

/// One change seen by [`Observer::changes`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// CLOCK_REALTIME nanoseconds of detection.
    pub timestamp_ns: u64,
    /// The object.
    pub object: ObjectId,
    /// Its label.
    pub label: String,
    /// Its type's name.
    pub type_name: String,
    /// What changed.
    pub kind: ChangeKind,
}

struct Watched {
    region: memwatch_core::RegionId,
    label: String,
    type_name: String,
    values: Vec<(String, Value)>,
}

struct WatchState {
    watcher: memwatch_core::Watcher,
    objects: BTreeMap<ObjectId, Watched>,
    by_region: HashMap<memwatch_core::RegionId, ObjectId>,
}

/// A read-only view of one session. Maps every segment `O_RDONLY`,
/// `PROT_READ`: it can never write the producer's memory.
pub struct Observer {
    session: String,
    dir: Dir,
    opts: ObserverOptions,
    header: Mapping,
    regions: Vec<Mapping>,
    types: Vec<TypeInfo>,
    objects: Vec<ObjectInfo>,
    seq: u64,
    watch: Option<WatchState>,
}

fn bad(m: String) -> Error {
    Error::BadSegment(m)
}

impl Observer {
    /// Connects to session `session` in the default directory.
    pub fn connect(session: &str) -> Result<Observer> {
        Observer::connect_with(session, &ObserverOptions::default())
    }

    /// Connects with options: maps and checks the header, loads types,
    /// regions and objects.
    pub fn connect_with(session: &str, options: &ObserverOptions) -> Result<Observer> {
        shm::validate_name(session)?;
        let path = options.dir.clone().unwrap_or_else(shm::default_dir);
        let dir = Dir::open(&path, false, options.owner)?;
        let header = session::open_header(&dir, session)?;
        let mut o = Observer {
            session: session.to_string(),
            dir,
            opts: options.clone(),
            header,
            regions: Vec::new(),
            types: Vec::new(),
            objects: Vec::new(),
            seq: u64::MAX,
            watch: None,
        };
        o.refresh()?;
        Ok(o)
    }

    fn h(&self) -> &Header {
        // SAFETY: open_header checked the mapping holds a valid Header.
        unsafe { &*(self.header.ptr as *const Header) }
    }

    /// The session's name.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The session now: producer pid, liveness, counts, ages.
    pub fn session_info(&self) -> SessionInfo {
        session::info_of(&self.session, &self.dir.path, self.h())
    }

    /// Whether the producer is alive, stale or dead (checked now).
    pub fn liveness(&self) -> Liveness {
        session::judge(self.h()).0
    }

    /// The structural sequence number the current view was loaded at.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Reloads types, regions and objects if the structural sequence moved;
    /// `Ok(true)` if it did.
    pub fn refresh(&mut self) -> Result<bool> {
        let seq = self.h().sequence.load(Ordering::Acquire);
        if seq == self.seq {
            return Ok(false);
        }
        self.load_types()?;
        self.load_regions()?;
        self.load_objects()?;
        self.seq = seq;
        Ok(true)
    }

    fn load_types(&mut self) -> Result<()> {
        let h = self.h();
        let tcount = h.type_count.load(Ordering::Acquire);
        let fcount = h.field_count.load(Ordering::Acquire);
        if tcount > h.types_capacity || fcount > h.fields_capacity {
            return Err(bad(format!("{}: type or field count beyond capacity", self.session)));
        }
        let (toff, foff) = (h.types_offset, h.fields_offset);
        for ti in self.types.len() as u32..tcount {
            // SAFETY: ti < type_count <= capacity: inside the mapping (layout
            // checked at connect); published before type_count (acquire).
            let t = unsafe {
                std::ptr::read_volatile(
                    self.header
                        .ptr
                        .add(toff as usize + ti as usize * std::mem::size_of::<TypeEntry>())
                        as *const TypeEntry,
                )
            };
            let name = layout::get_str(&t.name);
            if t.first_field as u64 + t.field_count as u64 > fcount as u64 || t.size == 0 {
                return Err(bad(format!("type {name}: fields outside the pool")));
            }
            let mut fields = Vec::with_capacity(t.field_count as usize);
            for fi in 0..t.field_count {
                // SAFETY: as above, for the field pool.
                let f = unsafe {
                    std::ptr::read_volatile(self.header.ptr.add(
                        foff as usize
                            + (t.first_field + fi) as usize * std::mem::size_of::<FieldEntry>(),
                    ) as *const FieldEntry)
                };
                let path = layout::get_str(&f.path);
                let prim = Primitive::from_code(f.prim)
                    .ok_or_else(|| bad(format!("{name}.{path}: primitive code {}", f.prim)))?;
                let atomicity = Atomicity::from_code(f.atomicity)
                    .ok_or_else(|| bad(format!("{name}.{path}: atomicity code {}", f.atomicity)))?;
                let semantics = Semantics::from_code(f.semantics)
                    .ok_or_else(|| bad(format!("{name}.{path}: semantics code {}", f.semantics)))?;
                let size = prim.size() as u64 * f.array_len.max(1) as u64;
                if size != f.size as u64 || f.offset as u64 + size > t.size as u64 {
                    return Err(bad(format!("{name}.{path}: size or offset outside the type")));
                }
                let guarded = matches!(atomicity, Atomicity::Seqlock | Atomicity::Locked);
                if guarded && (f.guard_offset % 8 != 0 || f.guard_offset as u64 + 8 > t.size as u64)
                {
                    return Err(bad(format!("{name}.{path}: guard word outside the type")));
                }
                if atomicity == Atomicity::Atomic
                    && (f.array_len != 0 || f.offset as usize % prim.size() != 0)
                {
                    return Err(bad(format!("{name}.{path}: misaligned atomic")));
                }
                fields.push(FieldInfo {
                    index: fi as usize,
                    path,
                    offset: f.offset,
                    size: f.size,
                    prim,
                    array_len: f.array_len,
                    atomicity,
                    guard_offset: f.guard_offset,
                    unit: layout::get_str(&f.unit),
                    help: layout::get_str(&f.help),
                    semantics,
                });
            }
            self.types.push(TypeInfo { index: ti, name, size: t.size, align: t.align, fields });
        }
        Ok(())
    }

    fn load_regions(&mut self) -> Result<()> {
        let count = self.h().region_count.load(Ordering::Acquire);
        loop {
            let next = match self.regions.last() {
                None => self.h().first_region.load(Ordering::Acquire),
                // SAFETY: each region mapping was checked to hold a RegionHeader.
                Some(r) => {
                    unsafe { &*(r.ptr as *const RegionHeader) }.next_region.load(Ordering::Acquire)
                }
            };
            if next == 0 {
                break;
            }
            if next != self.regions.len() as u32 + 1 || next > count.max(1) + 1 {
                return Err(bad(format!("{}: region chain points at region {next}", self.session)));
            }
            let name = shm::region_name(&self.session, next);
            let m = shm::open_segment(&self.dir, &name, 4096, None)?;
            // SAFETY: the mapping is >= 4096 bytes, more than a RegionHeader.
            let rh = unsafe { &*(m.ptr as *const RegionHeader) };
            if rh.magic != layout::REGION_MAGIC || rh.region_id != next || rh.size as usize != m.len
            {
                return Err(bad(format!(
                    "{name}: not region {next} of this session, or truncated"
                )));
            }
            self.regions.push(m);
        }
        Ok(())
    }

    fn load_objects(&mut self) -> Result<()> {
        let h = self.h();
        let slots = h.object_slots.load(Ordering::Acquire).min(h.objects_capacity);
        let mut out = Vec::new();
        for slot in 0..slots {
            if let Some(o) = self.read_entry(slot)? {
                out.push(o);
            }
        }
        self.objects = out;
        Ok(())
    }

    fn entry(&self, slot: u32) -> &ObjectEntry {
        let off =
            self.h().objects_offset as usize + slot as usize * std::mem::size_of::<ObjectEntry>();
        // SAFETY: slot < objects_capacity (callers): inside the checked layout.
        unsafe { &*(self.header.ptr.add(off) as *const ObjectEntry) }
    }

    /// Reads one slot consistently (its generation as a seqlock); `None`
    /// unless it holds a published, alive object. A slot the producer is
    /// rewriting (odd or moving generation) holds no published object yet:
    /// `None` too, the next refresh sees it.
    fn read_entry(&self, slot: u32) -> Result<Option<ObjectInfo>> {
        let e = self.entry(slot);
        for _ in 0..8 {
            let g1 = e.generation.load(Ordering::Acquire);
            if g1 & 1 == 1 {
                return Ok(None);
            }
            let state = e.state.load(Ordering::Acquire);
            // SAFETY: plain fields of a slot inside the mapping; the copy is
            // used only if the generation is unchanged after it.
            let copy = unsafe { std::ptr::read_volatile(e as *const ObjectEntry) };
            fence(Ordering::Acquire);
            if e.generation.load(Ordering::Relaxed) != g1 {
                continue;
            }
            if state != ObjectState::Alive as u32 {
                return Ok(None);
            }
            let label = layout::get_str(&copy.label);
            let t = self.types.get(copy.type_index as usize).ok_or_else(|| {
                bad(format!("object {label}: unknown type index {}", copy.type_index))
            })?;
            let r = self
                .regions
                .get((copy.region as usize).wrapping_sub(1))
                .ok_or_else(|| bad(format!("object {label}: unknown region {}", copy.region)))?;
            let want = t.size as u64 * copy.count as u64;
            if copy.size != want
                || copy.offset < layout::REGION_DATA_START
                || copy.offset.checked_add(copy.size).map_or(true, |end| end > r.len as u64)
            {
                return Err(bad(format!("object {label}: data outside its region")));
            }
            return Ok(Some(ObjectInfo {
                id: ObjectId { slot, generation: g1 },
                label,
                type_index: copy.type_index,
                type_name: t.name.clone(),
                count: copy.count,
                state: ObjectState::Alive,
                region: copy.region,
                offset: copy.offset,
            }));
        }
        Ok(None)
    }

    /// Registered types.
    pub fn types(&self) -> &[TypeInfo] {
        &self.types
    }

    /// The type of an object.
    pub fn type_of(&self, obj: &ObjectInfo) -> Result<&TypeInfo> {
        self.types
            .get(obj.type_index as usize)
            .ok_or_else(|| Error::NotFound(format!("type index {}", obj.type_index)))
    }

    /// Objects alive at the last refresh, in slot order.
    pub fn objects(&self) -> &[ObjectInfo] {
        &self.objects
    }

    /// The live object labelled `label` (as of the last refresh).
    pub fn find(&self, label: &str) -> Option<ObjectInfo> {
        self.objects.iter().find(|o| o.label == label).cloned()
    }

    /// Whether `obj` is still alive now (not destroyed, slot not reused).
    pub fn is_alive(&self, obj: &ObjectInfo) -> bool {
        let h = self.h();
        if obj.id.slot >= h.objects_capacity {
            return false;
        }
        let e = self.entry(obj.id.slot);
        fence(Ordering::Acquire);
        e.generation.load(Ordering::Acquire) == obj.id.generation
            && e.state.load(Ordering::Acquire) == ObjectState::Alive as u32
    }

    fn base(&self, obj: &ObjectInfo) -> Result<*const u8> {
        let r = self
            .regions
            .get((obj.region as usize).wrapping_sub(1))
            .ok_or_else(|| Error::NotFound(format!("region {}", obj.region)))?;
        let t = self.type_of(obj)?;
        if obj.offset + t.size as u64 * obj.count as u64 > r.len as u64 {
            return Err(Error::InvalidArgument(format!("object {} outside its region", obj.label)));
        }
        Ok(r.ptr.wrapping_add(obj.offset as usize))
    }

    fn gone(&self, obj: &ObjectInfo) -> Result<()> {
        if self.is_alive(obj) {
            Ok(())
        } else {
            Err(Error::Gone(format!("{} ({}/{})", obj.label, obj.id.slot, obj.id.generation)))
        }
    }

    /// Splits `[i].path` into (element, path); plain paths are element 0.
    fn split_path<'a>(obj: &ObjectInfo, path: &'a str) -> Result<(u32, &'a str)> {
        if let Some(rest) = path.strip_prefix('[') {
            let (n, p) = rest
                .split_once("].")
                .ok_or_else(|| Error::InvalidArgument(format!("path {path:?}: use [i].field")))?;
            let i: u32 =
                n.parse().map_err(|_| Error::InvalidArgument(format!("path {path:?}: index")))?;
            if i >= obj.count {
                return Err(Error::InvalidArgument(format!(
                    "path {path:?}: {} has {} elements",
                    obj.label, obj.count
                )));
            }
            Ok((i, p))
        } else {
            Ok((0, path))
        }
    }

    /// Reads the field at `path` (`[i].path` for element i of an array) of
    /// `obj`, honouring its atomicity: atomic load, seqlock read (or
    /// [`Error::Torn`]), or a plain copy. [`Error::Gone`] if the object was
    /// destroyed meanwhile.
    pub fn read(&self, obj: &ObjectInfo, path: &str) -> Result<Value> {
        let (elem, p) = Self::split_path(obj, path)?;
        let t = self.type_of(obj)?;
        let f = t
            .field(p)
            .ok_or_else(|| Error::NotFound(format!("type {} has no field {p:?}", t.name)))?;
        self.read_field(obj, elem, f)
    }

    /// Reads field `f` of element `elem` of `obj` (see [`Observer::read`]).
    pub fn read_field(&self, obj: &ObjectInfo, elem: u32, f: &FieldInfo) -> Result<Value> {
        let t = self.type_of(obj)?;
        if elem >= obj.count {
            return Err(Error::InvalidArgument(format!("element {elem} of {}", obj.label)));
        }
        let base = self.base(obj)?.wrapping_add(elem as usize * t.size as usize);
        let mut buf = vec![0u8; f.size as usize];
        self.read_bytes(base, f, &mut buf)?;
        fence(Ordering::Acquire);
        self.gone(obj)?;
        Ok(Value::decode(f.prim, f.array_len, &buf))
    }

    fn read_bytes(&self, base: *const u8, f: &FieldInfo, buf: &mut [u8]) -> Result<()> {
        let p = base.wrapping_add(f.offset as usize);
        match f.atomicity {
            // SAFETY (all arms): base..base+type size lies inside a mapped
            // region (checked by base()), and the field inside the type
            // (checked at load); atomics are aligned (checked at load).
            Atomicity::None => unsafe { load_relaxed(p, buf) },
            Atomicity::Atomic => unsafe {
                match buf.len() {
                    1 => buf[0] = (*(p as *const AtomicU8)).load(Ordering::Acquire),
                    2 => buf.copy_from_slice(
                        &(*(p as *const AtomicU16)).load(Ordering::Acquire).to_ne_bytes(),
                    ),
                    4 => buf.copy_from_slice(
                        &(*(p as *const AtomicU32)).load(Ordering::Acquire).to_ne_bytes(),
                    ),
                    _ => buf.copy_from_slice(
                        &(*(p as *const AtomicU64)).load(Ordering::Acquire).to_ne_bytes(),
                    ),
                }
            },
            Atomicity::Seqlock | Atomicity::Locked => {
                let cell = RawCell {
                    seq: base.wrapping_add(f.guard_offset as usize) as *const AtomicU64,
                    data: p as *mut u8,
                };
                protocol::read(&cell, buf, self.opts.read_attempts, true)
                    .map_err(|e| Error::Torn(format!("{}: {e}", f.path)))?;
            }
        }
        Ok(())
    }

    /// A consistent copy of every field of `obj`: the fields under one
    /// seqlock are copied in one pass, so they belong to the same write.
    pub fn snapshot(&self, obj: &ObjectInfo) -> Result<Snapshot> {
        let t = self.type_of(obj)?;
        let base0 = self.base(obj)?;
        let mut values = Vec::with_capacity(t.fields.len() * obj.count as usize);
        for elem in 0..obj.count {
            let base = base0.wrapping_add(elem as usize * t.size as usize);
            let prefix = if obj.count > 1 { format!("[{elem}].") } else { String::new() };
            // Seqlock groups: guard offset -> byte span of its fields.
            let mut groups: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
            for f in &t.fields {
                if matches!(f.atomicity, Atomicity::Seqlock | Atomicity::Locked) {
                    let g = groups.entry(f.guard_offset).or_insert((u32::MAX, 0));
                    g.0 = g.0.min(f.offset);
                    g.1 = g.1.max(f.offset + f.size);
                }
            }
            let mut spans: Vec<(u32, u32, Vec<u8>)> = Vec::with_capacity(groups.len());
            for (&g, &(start, end)) in &groups {
                let mut buf = vec![0u8; (end - start) as usize];
                let cell = RawCell {
                    seq: base.wrapping_add(g as usize) as *const AtomicU64,
                    data: base.wrapping_add(start as usize) as *mut u8,
                };
                protocol::read(&cell, &mut buf, self.opts.read_attempts, true)
                    .map_err(|e| Error::Torn(format!("{}: {e}", obj.label)))?;
                spans.push((g, start, buf));
            }
            let mut small = [0u8; 8];
            for f in &t.fields {
                let guarded = matches!(f.atomicity, Atomicity::Seqlock | Atomicity::Locked);
                let v = match spans.iter().find(|s| guarded && s.0 == f.guard_offset) {
                    Some((_, start, span)) => {
                        let s = (f.offset - start) as usize;
                        Value::decode(f.prim, f.array_len, &span[s..s + f.size as usize])
                    }
                    None if f.size <= 8 => {
                        let buf = &mut small[..f.size as usize];
                        self.read_bytes(base, f, buf)?;
                        Value::decode(f.prim, f.array_len, buf)
                    }
                    None => {
                        let mut buf = vec![0u8; f.size as usize];
                        self.read_bytes(base, f, &mut buf)?;
                        Value::decode(f.prim, f.array_len, &buf)
                    }
                };
                let path =
                    if prefix.is_empty() { f.path.clone() } else { format!("{prefix}{}", f.path) };
                values.push((path, v));
            }
        }
        fence(Ordering::Acquire);
        self.gone(obj)?;
        Ok(Snapshot { object: obj.clone(), values })
    }

    /// Changes since the previous call: objects created and destroyed, and
    /// every field whose value differs from the one last reported, with old
    /// and new typed values. The first call reports every live object as
    /// `Created` and starts watching. Detection is memwatch-core's poll
    /// backend over this observer's read-only mapping (hash, then diff of
    /// the changed bytes); each changed field is then re-read with its
    /// atomicity. Values changing back and forth between two calls are
    /// seen as one change (or none).
    pub fn changes(&mut self) -> Result<Vec<ChangeEvent>> {
        self.refresh()?;
        if self.watch.is_none() {
            let watcher = memwatch_core::Watcher::new(memwatch_core::Options {
                backend: memwatch_core::Backend::Poll,
                // Detection only: old/new come from typed re-reads.
                max_value_bytes: 0,
                preview_bytes: 0,
                ..memwatch_core::Options::default()
            })
            .map_err(|e| Error::Os(format!("memwatch: {e}")))?;
            self.watch =
                Some(WatchState { watcher, objects: BTreeMap::new(), by_region: HashMap::new() });
        }
        let now = shm::now_ns();
        let mut out = Vec::new();
        let live: BTreeMap<ObjectId, ObjectInfo> =
            self.objects.iter().map(|o| (o.id, o.clone())).collect();
        // Destroyed.
        let mut ws = self.watch.take().expect("set above");
        // Gone: not listed any more, or destroyed since the refresh read its
        // slot (its memory may already hold a new object).
        let gone: Vec<ObjectId> = ws
            .objects
            .keys()
            .filter(|id| !live.get(id).is_some_and(|o| self.is_alive(o)))
            .copied()
            .collect();
        for id in gone {
            let w = ws.objects.remove(&id).expect("listed");
            let _ = ws.watcher.unwatch(w.region);
            ws.by_region.remove(&w.region);
            out.push(ChangeEvent {
                timestamp_ns: now,
                object: id,
                label: w.label,
                type_name: w.type_name,
                kind: ChangeKind::Destroyed,
            });
        }
        // Field changes of objects already watched.
        let result = (|| -> Result<()> {
            let events =
                ws.watcher.check_changes().map_err(|e| Error::Os(format!("memwatch: {e}")))?;
            for ev in events {
                let Some(&id) = ws.by_region.get(&ev.region_id) else { continue };
                let Some(obj) = live.get(&id) else { continue };
                let w = ws.objects.get_mut(&id).expect("by_region and objects agree");
                let t = self.type_of(obj)?;
                let base = self.base(obj)?;
                let nf = t.fields.len();
                let size = t.size as usize;
                // The fields (of every element) that the changed bytes touch,
                // each re-read with its atomicity.
                let mut hit = vec![false; nf * obj.count as usize];
                for r in &ev.changed_ranges {
                    let (start, end) = (r.offset, r.offset + r.len);
                    for elem in start / size..end.div_ceil(size).min(obj.count as usize) {
                        let e0 = elem * size;
                        for (i, f) in t.fields.iter().enumerate() {
                            let (fs, fe) =
                                (e0 + f.offset as usize, e0 + (f.offset + f.size) as usize);
                            // A seqlock's fields are also re-read when only
                            // its sequence word moved (the data bytes were
                            // seen at the previous scan, mid-write).
                            let g = e0 + f.guard_offset as usize;
                            let guard_hit =
                                matches!(f.atomicity, Atomicity::Seqlock | Atomicity::Locked)
                                    && g < end
                                    && start < g + 8;
                            if (fs < end && start < fe) || guard_hit {
                                hit[elem * nf + i] = true;
                            }
                        }
                    }
                }
                let mut buf = Vec::new();
                for (k, _) in hit.iter().enumerate().filter(|(_, h)| **h) {
                    let (elem, f) = (k / nf, &t.fields[k % nf]);
                    buf.resize(f.size as usize, 0);
                    match self.read_bytes(base.wrapping_add(elem * size), f, &mut buf) {
                        Ok(()) => {}
                        // Still being written: its bytes differ again at the next call.
                        Err(Error::Torn(_)) => continue,
                        Err(e) => return Err(e),
                    }
                    let new = Value::decode(f.prim, f.array_len, &buf);
                    let (path, old) = &mut w.values[k];
                    if *old != new {
                        out.push(ChangeEvent {
                            timestamp_ns: now,
                            object: id,
                            label: obj.label.clone(),
                            type_name: obj.type_name.clone(),
                            kind: ChangeKind::Field {
                                path: path.clone(),
                                old: old.clone(),
                                new: new.clone(),
                            },
                        });
                        *old = new;
                    }
                }
                if !self.is_alive(obj) {
                    // Destroyed meanwhile: what was read may be another
                    // object's; it is reported as Destroyed next time.
                    out.retain(|e| e.object != id || !matches!(e.kind, ChangeKind::Field { .. }));
                }
            }
            // Created.
            for (id, obj) in &live {
                if ws.objects.contains_key(id) || !self.is_alive(obj) {
                    continue;
                }
                let t = self.type_of(obj)?;
                let len = t.size as usize * obj.count as usize;
                let base = self.base(obj)?;
                // SAFETY: base..base+len is inside a region mapping that this
                // observer keeps mapped until it is dropped (after the watcher).
                let region = unsafe { ws.watcher.watch_read_only(base, len, &obj.label, None) }
                    .map_err(|e| Error::Os(format!("memwatch watch {}: {e}", obj.label)))?;
                let snap = match self.snapshot(obj) {
                    Ok(s) => s,
                    // Destroyed meanwhile, or a seqlock mid-write: seen next call.
                    Err(Error::Gone(_) | Error::Torn(_)) => {
                        let _ = ws.watcher.unwatch(region);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                ws.by_region.insert(region, *id);
                ws.objects.insert(
                    *id,
                    Watched {
                        region,
                        label: obj.label.clone(),
                        type_name: obj.type_name.clone(),
                        values: snap.values,
                    },
                );
                out.push(ChangeEvent {
                    timestamp_ns: now,
                    object: *id,
                    label: obj.label.clone(),
                    type_name: obj.type_name.clone(),
                    kind: ChangeKind::Created,
                });
            }
            Ok(())
        })();
        self.watch = Some(ws);
        result?;
        Ok(out)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Some(ws) = self.watch.take() {
            ws.watcher.close();
        }
    }
}
