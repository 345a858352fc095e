//! Password checks through PAM, the system's Pluggable Authentication
//! Modules (`/etc/pam.d/SERVICE`), as Courier's `authpam` and Dovecot's
//! `passdb pam` make them.
//!
//! Linux-PAM is loaded when first needed (`libpam.so.0`, with `dlopen`),
//! not linked: the PAM crates generate their bindings with bindgen from
//! the development headers, which would make libclang and libpam0g-dev a
//! requirement for building tern at all, where only sites that configure
//! PAM need the library (every Debian system has it). The calls are few
//! and fixed: `pam_start`, `pam_set_item(PAM_RHOST)`, `pam_authenticate`,
//! `pam_acct_mgmt`, `pam_end`, with a conversation function that answers
//! the password prompt with the password and the login prompt with the
//! name.
//!
//! A check blocks (a module may sleep on a failure delay, or wait for a
//! network directory): call [`check`] from a thread of its own, never from
//! an async worker. The modules a service stacks must be thread-safe
//! (pam_unix, pam_sss and pam_ldap are).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

const PAM_SUCCESS: c_int = 0;
const PAM_OPEN_ERR: c_int = 1;
const PAM_SYMBOL_ERR: c_int = 2;
const PAM_SERVICE_ERR: c_int = 3;
const PAM_SYSTEM_ERR: c_int = 4;
const PAM_BUF_ERR: c_int = 5;
const PAM_AUTHINFO_UNAVAIL: c_int = 9;
const PAM_CONV_ERR: c_int = 19;
const PAM_ABORT: c_int = 26;
const PAM_RHOST: c_int = 4;
const PAM_SILENT: c_int = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
/// Linux-PAM's PAM_MAX_NUM_MSG: no conversation asks more at once.
const PAM_MAX_NUM_MSG: c_int = 32;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

type StartFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *const PamConv, *mut *mut c_void) -> c_int;
type EndFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type FlagsFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type SetItemFn = unsafe extern "C" fn(*mut c_void, c_int, *const c_void) -> c_int;
type StrerrorFn = unsafe extern "C" fn(*mut c_void, c_int) -> *const c_char;

/// The PAM library and the functions used from it.
struct Lib {
    _lib: libloading::Library,
    start: StartFn,
    end: EndFn,
    authenticate: FlagsFn,
    acct_mgmt: FlagsFn,
    set_item: SetItemFn,
    strerror: StrerrorFn,
}

/// Why PAM could not say yes or no.
#[derive(Debug, thiserror::Error)]
pub enum PamError {
    /// The library is missing, the service cannot be started, or a module
    /// could not reach what it checks against.
    #[error("PAM unavailable: {0}")]
    Unavailable(String),
}

/// What PAM said about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right and the account may log in.
    Accepted,
    /// Refused: wrong password, unknown user, expired or locked account;
    /// PAM's reason, for the log.
    Refused(String),
}

fn load() -> Result<Lib, String> {
    // SAFETY: loading libpam runs its initialisers, which only set up
    // the library's own state.
    let lib = unsafe { libloading::Library::new("libpam.so.0") }
        .map_err(|e| format!("libpam.so.0: {e}"))?;
    // SAFETY: each symbol is looked up with the C signature Linux-PAM's
    // <security/pam_appl.h> declares for it; the pointers stay valid while
    // `_lib` (kept in the same struct, never unloaded) lives.
    unsafe {
        let start = *lib
            .get::<StartFn>(b"pam_start\0")
            .map_err(|e| e.to_string())?;
        let end = *lib.get::<EndFn>(b"pam_end\0").map_err(|e| e.to_string())?;
        let authenticate = *lib
            .get::<FlagsFn>(b"pam_authenticate\0")
            .map_err(|e| e.to_string())?;
        let acct_mgmt = *lib
            .get::<FlagsFn>(b"pam_acct_mgmt\0")
            .map_err(|e| e.to_string())?;
        let set_item = *lib
            .get::<SetItemFn>(b"pam_set_item\0")
            .map_err(|e| e.to_string())?;
        let strerror = *lib
            .get::<StrerrorFn>(b"pam_strerror\0")
            .map_err(|e| e.to_string())?;
        Ok(Lib {
            _lib: lib,
            start,
            end,
            authenticate,
            acct_mgmt,
            set_item,
            strerror,
        })
    }
}

fn lib() -> Result<&'static Lib, PamError> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|e| PamError::Unavailable(e.clone()))
}

/// Whether PAM can be used on this machine (the library loads).
///
/// # Errors
/// Why not.
pub fn available() -> Result<(), PamError> {
    lib().map(|_| ())
}

/// What the conversation answers with.
struct Answers {
    user: CString,
    password: CString,
}

/// A copy of `s` in memory PAM may `free`.
///
/// # Safety
/// `s` is a valid C string.
unsafe fn c_copy(s: &CStr) -> *mut c_char {
    // SAFETY: strdup reads the NUL-terminated string `s` points to.
    unsafe { libc::strdup(s.as_ptr()) }
}

/// The conversation function: the password for a hidden prompt, the name
/// for a visible one, nothing for messages.
///
/// # Safety
/// Called by libpam with `appdata` the `Answers` given to `pam_start`,
/// `msg` an array of `num_msg` message pointers (Linux-PAM's layout) and
/// `resp` where the answers go.
unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    let n = num_msg as usize;
    // SAFETY: appdata is the `Answers` that `check` keeps alive across the
    // whole PAM transaction.
    let answers = unsafe { &*(appdata as *const Answers) };
    // SAFETY: calloc of n zeroed responses; PAM frees the array and each
    // `resp` string in it.
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: msg holds n pointers to messages (checked non-null below).
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            continue;
        }
        // SAFETY: m points to a message PAM owns for this call.
        let style = unsafe { (*m).msg_style };
        let answer = match style {
            PAM_PROMPT_ECHO_OFF => Some(answers.password.as_c_str()),
            PAM_PROMPT_ECHO_ON => Some(answers.user.as_c_str()),
            _ => None,
        };
        if let Some(a) = answer {
            // SAFETY: `a` is a valid C string; out has n entries.
            let copy = unsafe { c_copy(a) };
            if copy.is_null() {
                for j in 0..i {
                    // SAFETY: entries before i were set by this loop (or are
                    // null, which free accepts).
                    unsafe { libc::free((*out.add(j)).resp as *mut c_void) };
                }
                // SAFETY: out came from calloc above.
                unsafe { libc::free(out as *mut c_void) };
                return PAM_BUF_ERR;
            }
            // SAFETY: i < n.
            unsafe { (*out.add(i)).resp = copy };
        }
    }
    // SAFETY: resp is where PAM wants the array.
    unsafe { *resp = out };
    PAM_SUCCESS
}

/// Checks `user`'s `password` with PAM service `service` (its stack in
/// `/etc/pam.d/`), telling the modules the client's address `rhost`:
/// `pam_authenticate`, then `pam_acct_mgmt` (expired and locked accounts).
/// Blocks; see the crate's documentation.
///
/// # Errors
/// [`PamError::Unavailable`] when the library or the service cannot be
/// used, or a module cannot reach what it checks against.
pub fn check(
    service: &str,
    user: &str,
    password: &[u8],
    rhost: Option<&str>,
) -> Result<Verdict, PamError> {
    let lib = lib()?;
    let (Ok(service), Ok(name)) = (CString::new(service), CString::new(user)) else {
        return Ok(Verdict::Refused("a NUL in the name".into()));
    };
    let Ok(password) = CString::new(password) else {
        return Ok(Verdict::Refused("a NUL in the password".into()));
    };
    if password.as_bytes().is_empty() {
        return Ok(Verdict::Refused("an empty password".into()));
    }
    let answers = Box::new(Answers {
        user: name.clone(),
        password,
    });
    let conv = PamConv {
        conv: Some(converse),
        appdata_ptr: &*answers as *const Answers as *mut c_void,
    };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: service and name are C strings, conv lives until pam_end
    // below, handle receives the new transaction.
    let rc = unsafe { (lib.start)(service.as_ptr(), name.as_ptr(), &conv, &mut handle) };
    if rc != PAM_SUCCESS || handle.is_null() {
        return Err(PamError::Unavailable(format!("pam_start failed ({rc})")));
    }
    let reason = |rc: c_int| -> String {
        // SAFETY: handle is the live transaction; pam_strerror returns a
        // static string (or null).
        let p = unsafe { (lib.strerror)(handle, rc) };
        if p.is_null() {
            format!("PAM error {rc}")
        } else {
            // SAFETY: p is a NUL-terminated string owned by libpam.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let mut rc = PAM_SUCCESS;
    if let Some(h) = rhost.and_then(|h| CString::new(h).ok()) {
        // SAFETY: PAM copies the item's string.
        rc = unsafe { (lib.set_item)(handle, PAM_RHOST, h.as_ptr() as *const c_void) };
    }
    if rc == PAM_SUCCESS {
        // SAFETY: the live transaction.
        rc = unsafe { (lib.authenticate)(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
    }
    if rc == PAM_SUCCESS {
        // SAFETY: the live transaction.
        rc = unsafe { (lib.acct_mgmt)(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
    }
    let text = reason(rc);
    // SAFETY: ends the transaction begun above; nothing uses handle after.
    unsafe { (lib.end)(handle, rc) };
    drop(answers);
    match rc {
        PAM_SUCCESS => Ok(Verdict::Accepted),
        PAM_OPEN_ERR | PAM_SYMBOL_ERR | PAM_SERVICE_ERR | PAM_SYSTEM_ERR | PAM_BUF_ERR
        | PAM_AUTHINFO_UNAVAIL | PAM_CONV_ERR | PAM_ABORT => Err(PamError::Unavailable(text)),
        _ => Ok(Verdict::Refused(text)),
    }
}
