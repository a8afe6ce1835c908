//! The NBD wire protocol's numbers (the "fixed newstyle" handshake and the transmission phase,
//! as the NBD protocol document gives them) and the encoding of option replies and replies.

/// `NBDMAGIC`, the first eight bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: after `NBDMAGIC` in newstyle, and before each option of the client.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// The magic of option replies.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The magic of a request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flags: fixed newstyle, and no 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// See [`FLAG_FIXED_NEWSTYLE`].
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// See [`FLAG_C_FIXED_NEWSTYLE`].
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
/// The export is read-only.
pub const FLAG_READ_ONLY: u16 = 1 << 1;
/// Several connections see the same data.
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// `NBD_CMD_CACHE` is understood.
pub const FLAG_SEND_CACHE: u16 = 1 << 10;

/// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_ABORT: u32 = 2;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_LIST: u32 = 3;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_INFO: u32 = 6;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_GO: u32 = 7;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// See [`OPT_EXPORT_NAME`].
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply types.
pub const REP_ACK: u32 = 1;
/// See [`REP_ACK`].
pub const REP_SERVER: u32 = 2;
/// See [`REP_ACK`].
pub const REP_INFO: u32 = 3;
/// See [`REP_ACK`].
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
/// The option is not supported.
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
/// The option is malformed or not allowed now.
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
/// No such export.
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
/// The option's data is too large.
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;

/// `NBD_INFO_*` types.
pub const INFO_EXPORT: u16 = 0;
/// See [`INFO_EXPORT`].
pub const INFO_NAME: u16 = 1;
/// See [`INFO_EXPORT`].
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Commands.
pub const CMD_READ: u16 = 0;
/// See [`CMD_READ`].
pub const CMD_WRITE: u16 = 1;
/// See [`CMD_READ`].
pub const CMD_DISC: u16 = 2;
/// See [`CMD_READ`].
pub const CMD_TRIM: u16 = 4;
/// See [`CMD_READ`].
pub const CMD_CACHE: u16 = 5;
/// See [`CMD_READ`].
pub const CMD_WRITE_ZEROES: u16 = 6;
/// See [`CMD_READ`].
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flag: one block status descriptor only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

/// Structured reply flag: the last chunk of the reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Structured reply chunk types.
pub const REPLY_TYPE_NONE: u16 = 0;
/// See [`REPLY_TYPE_NONE`].
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// See [`REPLY_TYPE_NONE`].
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// See [`REPLY_TYPE_NONE`].
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

/// `base:allocation` flags.
pub const STATE_HOLE: u32 = 1 << 0;
/// See [`STATE_HOLE`].
pub const STATE_ZERO: u32 = 1 << 1;

/// The one metadata context, and the id it gets.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// See [`BASE_ALLOCATION`].
pub const BASE_ALLOCATION_ID: u32 = 1;

/// Errors of the transmission phase (errno values, as the protocol fixes them).
pub const EPERM: u32 = 1;
/// See [`EPERM`].
pub const EIO: u32 = 5;
/// See [`EPERM`].
pub const EINVAL: u32 = 22;
/// See [`EPERM`].
pub const ESHUTDOWN: u32 = 108;

/// A request of the transmission phase (after its 28-byte header; a write's payload follows).
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// `NBD_CMD_FLAG_*`.
    pub flags: u16,
    /// `NBD_CMD_*`.
    pub command: u16,
    /// The client's cookie, echoed in the reply.
    pub cookie: u64,
    /// Offset in the export.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

/// The size of a request header.
pub const REQUEST_LEN: usize = 28;

impl Request {
    /// Decodes a header; `None` when its magic is wrong.
    pub fn decode(b: &[u8; REQUEST_LEN]) -> Option<Self> {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        (u32_at(0) == REQUEST_MAGIC).then(|| Request {
            flags: u16_at(4),
            command: u16_at(6),
            cookie: u64_at(8),
            offset: u64_at(16),
            length: u32_at(24),
        })
    }
}

/// An option reply: header and data.
pub fn option_reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A simple reply header (a successful read's data follows it).
pub fn simple_reply(cookie: u64, error: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out
}

/// A structured reply chunk header for a payload of `length` bytes.
pub fn structured_header(cookie: u64, flags: u16, kind: u16, length: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out
}

/// A final `NBD_REPLY_TYPE_ERROR` chunk with `message`.
pub fn structured_error(cookie: u64, error: u32, message: &str) -> Vec<u8> {
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message.as_bytes()[..end];
    let mut out = structured_header(
        cookie,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        6 + message.len() as u32,
    );
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}
