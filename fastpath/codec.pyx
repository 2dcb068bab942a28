# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled record-batch codec; ``fastpath._codec_py`` is its specification (layout there).

Encoding sizes the batch in one pass and writes it into a single ``bytes`` in a second;
decoding reads the input through the buffer protocol without copying it, and creates
only the returned objects. The CRC-32C comes from the maintained ``crc32c`` package.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from crc32c import crc32c

from fastpath._errors import CorruptBatch

__all__ = ["MAGIC", "VERSION", "HEADER_SIZE", "encode_batch", "decode_batch", "iter_batch",
           "batch_count"]

MAGIC = b"EXB1"
VERSION = 1
HEADER_SIZE = 18
_ALL = -(2**63) - 1  # an ``after`` below every 64-bit offset

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)

cdef enum:
    HEADER = 18
    RECORD_HEAD = 24

cdef uint64_t U32_MAX = 0xFFFFFFFFULL


cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void _put_i64(unsigned char* p, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int i
    for i in range(8):
        p[i] = (u >> (8 * i)) & 0xFF


cdef inline uint32_t _get_u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline int64_t _get_i64(const unsigned char* p) noexcept nogil:
    cdef uint64_t u = 0
    cdef int i
    for i in range(8):
        u |= (<uint64_t>p[i]) << (8 * i)
    return <int64_t>u


cdef inline bint _is_ascii(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef unsigned char acc = 0
    cdef Py_ssize_t i
    for i in range(n):
        acc |= p[i]
    return acc < 0x80


cdef int64_t _as_i64(object value, Py_ssize_t i, str what) except? -1:
    if type(value) is not int:
        raise ValueError(f"record #{i}: {what} {value!r} is not a 64-bit int")
    try:
        return value
    except OverflowError:
        raise ValueError(f"record #{i}: {what} {value!r} is not a 64-bit int") from None


def encode_batch(records):
    """Frame ``(offset, ts_ms, key, payload)`` records as one batch."""
    cdef list seq = records if type(records) is list else list(records)
    cdef Py_ssize_t count = len(seq)
    cdef Py_ssize_t i, plen
    cdef Py_ssize_t klen = 0
    cdef uint64_t total = 0
    cdef const char** kptr = NULL
    cdef Py_ssize_t* klens = NULL
    cdef int64_t* nums = NULL
    cdef list payloads = [None] * count
    cdef object record, key, payload
    cdef bytes out
    cdef unsigned char* w
    if <uint64_t>count > U32_MAX:
        raise ValueError("batch larger than 4 GiB or 2**32-1 records")
    kptr = <const char**>PyMem_Malloc((count + 1) * sizeof(char*))
    klens = <Py_ssize_t*>PyMem_Malloc((count + 1) * sizeof(Py_ssize_t))
    nums = <int64_t*>PyMem_Malloc((2 * count + 1) * sizeof(int64_t))
    if kptr == NULL or klens == NULL or nums == NULL:
        PyMem_Free(kptr)
        PyMem_Free(klens)
        PyMem_Free(nums)
        raise MemoryError()
    try:
        for i in range(count):
            record = seq[i]
            if type(record) is not tuple or len(<tuple>record) != 4:
                if not isinstance(record, tuple) or len(record) != 4:
                    raise TypeError(f"record #{i}: expected a tuple (offset, ts_ms, key, payload)")
                record = tuple(record)
            nums[2 * i] = _as_i64((<tuple>record)[0], i, "offset")
            nums[2 * i + 1] = _as_i64((<tuple>record)[1], i, "ts_ms")
            key = (<tuple>record)[2]
            payload = (<tuple>record)[3]
            if not isinstance(key, str):
                raise TypeError(f"record #{i}: key must be str, not {type(key).__name__}")
            if type(payload) is not bytes:
                if not isinstance(payload, (bytes, bytearray, memoryview)):
                    raise TypeError(
                        f"record #{i}: payload must be bytes, not {type(payload).__name__}")
                payload = bytes(payload)
            payloads[i] = payload
            try:
                kptr[i] = PyUnicode_AsUTF8AndSize(key, &klen)
            except UnicodeEncodeError:
                raise ValueError(f"record #{i}: key is not encodable as UTF-8") from None
            klens[i] = klen
            plen = len(<bytes>payload)
            if <uint64_t>klen > U32_MAX or <uint64_t>plen > U32_MAX:
                raise ValueError(f"record #{i}: key or payload longer than 4 GiB")
            total += RECORD_HEAD + klen + plen
        if total > U32_MAX:
            raise ValueError("batch larger than 4 GiB or 2**32-1 records")
        out = PyBytes_FromStringAndSize(NULL, HEADER + <Py_ssize_t>total)
        w = <unsigned char*>PyBytes_AS_STRING(out)
        memcpy(w, b"EXB1", 4)
        w[4] = 1
        w[5] = 0
        _put_u32(w + 6, <uint32_t>count)
        _put_u32(w + 10, <uint32_t>total)
        w += HEADER
        for i in range(count):
            payload = payloads[i]
            plen = len(<bytes>payload)
            klen = klens[i]
            _put_i64(w, nums[2 * i])
            _put_i64(w + 8, nums[2 * i + 1])
            _put_u32(w + 16, <uint32_t>klen)
            _put_u32(w + 20, <uint32_t>plen)
            w += RECORD_HEAD
            memcpy(w, kptr[i], klen)
            w += klen
            memcpy(w, PyBytes_AS_STRING(payload), plen)
            w += plen
    finally:
        PyMem_Free(kptr)
        PyMem_Free(klens)
        PyMem_Free(nums)
    view = memoryview(out)
    crc = crc32c(view[HEADER:])
    view.release()
    _put_u32(<unsigned char*>PyBytes_AS_STRING(out) + 14, <uint32_t>crc)
    return out


cdef int _get_buffer(object buf, Py_buffer* view) except -1:
    try:
        PyObject_GetBuffer(buf, view, PyBUF_SIMPLE)
    except BufferError as exc:
        raise TypeError(f"batch must be a contiguous bytes-like object ({exc})") from None
    except TypeError:
        raise TypeError(f"batch must be bytes-like, not {type(buf).__name__}") from None
    return 0


cdef uint32_t _check_header(const unsigned char* p, Py_ssize_t size) except? 0xFFFFFFFF:
    """Check magic, version, flags and length; return the record count."""
    cdef uint64_t body_len
    if size < HEADER:
        raise CorruptBatch(f"truncated batch: {size} bytes, the header alone needs {HEADER}")
    if memcmp(p, b"EXB1", 4) != 0:
        raise CorruptBatch(f"bad magic {p[:4]!r}, expected {MAGIC!r}")
    if p[4] != 1:
        raise CorruptBatch(f"unsupported batch version {p[4]}, expected {VERSION}")
    if p[5] != 0:
        raise CorruptBatch(f"unknown batch flags 0x{p[5]:02x}")
    body_len = _get_u32(p + 10)
    if HEADER + body_len > <uint64_t>size:
        raise CorruptBatch(
            f"truncated batch: header says {body_len} body bytes, only {size - HEADER} present")
    if HEADER + body_len < <uint64_t>size:
        raise CorruptBatch(
            f"trailing garbage: {size - HEADER - <Py_ssize_t>body_len} bytes after the "
            f"{body_len}-byte body")
    return _get_u32(p + 6)


def batch_count(buf):
    """The number of records in a batch, from its header (magic and length are checked)."""
    cdef Py_buffer view
    _get_buffer(buf, &view)
    try:
        return _check_header(<const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def decode_batch(buf, after=-1, limit=-1):
    """Decode a batch; keep records with offset > ``after``, at most ``limit`` (< 0 = all)."""
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef Py_ssize_t size, pos, i
    cdef uint32_t count, crc, klen, plen
    cdef int64_t offset, ts, after_v = 0
    cdef Py_ssize_t limit_v = -1, taken = 0
    cdef bint take_all = False, take_none = False
    cdef list out = []
    cdef object key
    if type(after) is not int or type(limit) is not int:
        raise TypeError("after and limit must be int")
    try:
        after_v = after
    except OverflowError:
        if after > 0:
            take_none = True
        else:
            take_all = True
    if limit >= 0:
        try:
            limit_v = limit
        except OverflowError:
            limit_v = -1
    _get_buffer(buf, &view)
    try:
        p = <const unsigned char*>view.buf
        size = view.len
        count = _check_header(p, size)
        crc = _get_u32(p + 14)
        mv = memoryview(buf).cast("B")
        actual = crc32c(mv[HEADER:])
        mv.release()
        if actual != crc:
            raise CorruptBatch(f"CRC-32C mismatch: header 0x{crc:08x}, body 0x{actual:08x}")
        pos = HEADER
        for i in range(<Py_ssize_t>count):
            if pos + RECORD_HEAD > size:
                raise CorruptBatch(f"record #{i}: header runs past the end of the batch")
            offset = _get_i64(p + pos)
            ts = _get_i64(p + pos + 8)
            klen = _get_u32(p + pos + 16)
            plen = _get_u32(p + pos + 20)
            pos += RECORD_HEAD
            if pos + <Py_ssize_t>klen + <Py_ssize_t>plen > size:
                raise CorruptBatch(
                    f"record #{i}: key/payload lengths run past the end of the batch")
            if (not take_none and (take_all or offset > after_v)
                    and (limit_v < 0 or taken < limit_v)):
                try:
                    key = PyUnicode_DecodeUTF8(<const char*>(p + pos), klen, "strict")
                except UnicodeDecodeError:
                    raise CorruptBatch(f"record #{i}: key is not valid UTF-8") from None
                out.append((offset, ts, key, PyBytes_FromStringAndSize(
                    <const char*>(p + pos + klen), plen)))
                taken += 1
            elif not _is_ascii(p + pos, klen):
                # A record left out is still checked, without keeping its key.
                try:
                    PyUnicode_DecodeUTF8(<const char*>(p + pos), klen, "strict")
                except UnicodeDecodeError:
                    raise CorruptBatch(f"record #{i}: key is not valid UTF-8") from None
            pos += klen + plen
        if pos != size:
            raise CorruptBatch(f"trailing garbage: {size - pos} bytes after the {count} records")
        return out
    finally:
        PyBuffer_Release(&view)


def iter_batch(buf):
    """Iterate over every record of a batch; the whole batch is checked when this is called."""
    return iter(decode_batch(buf, _ALL))
