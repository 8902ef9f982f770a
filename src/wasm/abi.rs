//! The module's side of the proxy-wasm ABI 0.2.1: the functions Envoy calls
//! (`proxy_on_*`, the allocator, `_initialize`), the contexts they are
//! delivered to, and the HTTP calls in flight.
//!
//! This replaces the proxy-wasm Rust SDK's dispatcher, which panics (and so
//! aborts the worker's VM) on an unknown context id or call token, on a
//! duplicate one, and on every status it does not expect. Here nothing the
//! host sends can panic: a callback for a context or token this VM does not
//! know, or one that arrives while its context is busy, is ignored with the
//! neutral answer (`Continue`, done, no-op).
//!
//! The host calls the module one callback at a time (a VM is single-threaded)
//! and never re-enters it from a hostcall except through
//! `proxy_on_memory_allocate`, which touches no state here. Contexts are still
//! borrowed with `try_borrow_mut`, so even a re-entrant call could not panic.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::rc::Rc;

/// What a request callback tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    /// Go on with the next filter.
    Continue = 0,
    /// Stop the filter chain (the filter sent a local reply).
    Pause = 1,
}

/// What every context can be told (the SDK's `Context`, reduced to the
/// callbacks this filter uses; the defaults are the ABI's neutral answers).
pub trait Context {
    /// The answer to an HTTP call this context made (`host::WasmDispatcher`).
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
    }

    /// The context is finishing (the module never defers the end: see
    /// `proxy_on_done`).
    fn on_done(&mut self) {}
}

/// A root context: one per plugin configuration in the VM.
pub trait RootContext: Context {
    /// The VM started (only the first root context of a VM is told).
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    /// The plugin's configuration is ready to be read; `false` refuses it.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        true
    }

    /// The tick period set with `proxy_set_tick_period_milliseconds` elapsed.
    fn on_tick(&mut self) {}

    /// The context of a new HTTP stream; `None` leaves the stream alone.
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>>;
}

/// An HTTP stream's context.
pub trait HttpContext: Context {
    /// The request headers arrived.
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

type Shared<T> = Rc<RefCell<Box<T>>>;

/// The contexts Envoy created in this VM, by id, and the HTTP calls in flight.
#[derive(Default)]
struct Contexts {
    roots: BTreeMap<u32, Shared<dyn RootContext>>,
    streams: BTreeMap<u32, Shared<dyn HttpContext>>,
    /// (context id, token) of every `proxy_http_call` the host accepted and
    /// has not answered yet. Keyed by context too: Envoy numbers calls per
    /// context in some versions, so two root contexts may hold the same token.
    calls: BTreeSet<(u32, u32)>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
    /// The context whose callback is running (the one an HTTP call belongs to).
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` on the registry; `None` if it is unavailable (never in practice:
/// only a re-entrant call while it is borrowed, which lasts no callback).
fn registry<R>(f: impl FnOnce(&mut Contexts) -> R) -> Option<R> {
    CONTEXTS
        .try_with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
        .ok()
        .flatten()
}

fn root(id: u32) -> Option<Shared<dyn RootContext>> {
    registry(|c| c.roots.get(&id).cloned()).flatten()
}

fn stream(id: u32) -> Option<Shared<dyn HttpContext>> {
    registry(|c| c.streams.get(&id).cloned()).flatten()
}

fn set_active(id: u32) {
    let _ = ACTIVE.try_with(|a| a.set(id));
}

/// Runs `f` on root context `id` (made the active context); `None` when
/// there is no such root or it is busy.
fn with_root<R>(id: u32, f: impl FnOnce(&mut dyn RootContext) -> R) -> Option<R> {
    let ctx = root(id)?;
    let mut ctx = ctx.try_borrow_mut().ok()?;
    set_active(id);
    Some(f(ctx.as_mut()))
}

/// As `with_root`, for an HTTP stream's context.
fn with_stream<R>(id: u32, f: impl FnOnce(&mut dyn HttpContext) -> R) -> Option<R> {
    let ctx = stream(id)?;
    let mut ctx = ctx.try_borrow_mut().ok()?;
    set_active(id);
    Some(f(ctx.as_mut()))
}

/// Remembers an HTTP call the host accepted from the active context, so its
/// answer is delivered there (`host::WasmDispatcher` calls this).
pub fn track_http_call(token: u32) {
    let Ok(context_id) = ACTIVE.try_with(Cell::get) else {
        return;
    };
    registry(|c| c.calls.insert((context_id, token)));
}

// Integers cross the ABI as i32; `bool`s are taken as `u32` (any value but 0
// is true) and returned as 0 or 1, so no value the host passes is invalid.
fn word(b: bool) -> u32 {
    u32::from(b)
}

fn size(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The ABI version this module speaks (Envoy reads it from the export's name).
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[cfg(target_os = "wasi")]
extern "C" {
    /// The static constructors the linker collected (wasi-libc's among them).
    fn __wasm_call_ctors();
}

/// The root contexts' maker, set once by the plugin's `_initialize` (see
/// `initialize`): the ABI layer names no filter type.
type NewRoot = fn() -> Box<dyn RootContext>;

thread_local! {
    static NEW_ROOT: Cell<Option<NewRoot>> = const { Cell::new(None) };
}

/// The first thing the plugin's `_initialize` export (the WASI reactor's
/// start, which Envoy calls once per VM before anything else) does: runs the
/// static constructors, then keeps the maker of root contexts.
pub(crate) fn initialize(new_root: NewRoot) {
    #[cfg(target_os = "wasi")]
    // SAFETY: the linker-generated constructor function, called once, first,
    // as a reactor's `_initialize` must (what the SDK's `main!` did too).
    unsafe {
        __wasm_call_ctors();
    }
    let _ = NEW_ROOT.try_with(|n| n.set(Some(new_root)));
}

/// Memory for data the host hands to the module (header maps, buffers, shared
/// data): a boxed slice of exactly `size` bytes, which the receiver takes
/// back with `Vec::from_raw_parts(ptr, size, size)` (see `host::owned`).
/// Null, which the host treats as a failed call, if the memory cannot be had.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buf: Vec<MaybeUninit<u8>> = Vec::new();
    if buf.try_reserve_exact(size).is_err() {
        return std::ptr::null_mut();
    }
    // Uninitialized bytes (no writes: the host fills them); the capacity is
    // exactly `size`, so the boxed slice keeps this allocation.
    buf.resize(size, MaybeUninit::uninit());
    Box::into_raw(buf.into_boxed_slice()).cast::<u8>()
}

/// A context is created: a root context (one per plugin) when
/// `root_context_id` is 0, else an HTTP stream's under that root. An unknown
/// root, a root that makes no stream context (not configured), or an id
/// already in use creates nothing.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        // Envoy calls this again for a root it already created when a
        // plugin starts anew in the same VM: the root keeps its state.
        let Some(new_root) = NEW_ROOT.try_with(Cell::get).ok().flatten() else {
            return;
        };
        registry(|c| {
            c.roots
                .entry(context_id)
                .or_insert_with(|| Rc::new(RefCell::new(new_root())));
        });
        return;
    }
    let Some(parent) = root(root_context_id) else {
        return;
    };
    let Ok(parent) = parent.try_borrow() else {
        return;
    };
    set_active(root_context_id);
    let Some(ctx) = parent.create_http_context(context_id) else {
        return;
    };
    registry(|c| {
        c.streams
            .entry(context_id)
            .or_insert_with(|| Rc::new(RefCell::new(ctx)));
    });
}

/// The VM started (first root context). An unknown root refuses (0), so the
/// VM fails instead of running without its root.
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, vm_configuration_size: u32) -> u32 {
    word(with_root(context_id, |r| r.on_vm_start(size(vm_configuration_size))).unwrap_or(false))
}

/// The plugin's configuration (1 accepted, 0 refused). An unknown root
/// refuses, so the plugin is never taken as configured without its root.
#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: u32) -> u32 {
    let configured = with_root(context_id, |r| {
        r.on_configure(size(plugin_configuration_size))
    });
    word(configured.unwrap_or(false))
}

/// A root context's tick.
#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_root(context_id, |r| r.on_tick());
}

/// A request's headers: the stream's `Action` (`Continue` for an unknown one).
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: u32,
    end_of_stream: u32,
) -> u32 {
    let action = with_stream(context_id, |s| {
        s.on_http_request_headers(size(num_headers), end_of_stream != 0)
    });
    action.unwrap_or(Action::Continue) as u32
}

/// The answer to an HTTP call, delivered to the context that made it; an
/// answer to a call this VM does not know of (or no longer does) is dropped.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: u32,
    body_size: u32,
    num_trailers: u32,
) {
    let known = registry(|c| c.calls.remove(&(context_id, token))).unwrap_or(false);
    if !known {
        return;
    }
    let (headers, body, trailers) = (size(num_headers), size(body_size), size(num_trailers));
    if with_root(context_id, |r| {
        r.on_http_call_response(token, headers, body, trailers)
    })
    .is_none()
    {
        with_stream(context_id, |s| {
            s.on_http_call_response(token, headers, body, trailers)
        });
    }
}

/// A context is finishing: always 1 (this module never defers its end with
/// `proxy_done`), and the context is forgotten with its calls in flight.
/// Envoy calls this, then `proxy_on_delete` if exported, for every HTTP
/// stream and for a root whose plugin goes away; the module exports no
/// `proxy_on_delete`, so each request costs one call into the VM fewer.
#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    if with_stream(context_id, |s| s.on_done()).is_none() {
        with_root(context_id, |r| r.on_done());
    }
    forget(context_id);
    word(true)
}

/// Forgets a context and its calls in flight (no-op if unknown). Dropped
/// outside the registry's borrow: a context's drop touches no registry, but
/// nothing depends on that.
fn forget(context_id: u32) {
    let removed = registry(|c| {
        c.calls.retain(|&(id, _)| id != context_id);
        let stream = c.streams.remove(&context_id);
        let root = c.roots.remove(&context_id);
        (stream, root)
    });
    drop(removed);
}

// No `proxy_on_log`: the filter records nothing in the access log, and Envoy
// skips the call into the VM for a callback the module does not export (one
// call fewer per request; src/source_checks.rs keeps it out).
