# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled route table; ``fastpath._router_py`` is its specification (same names, same answers).

The templates compile into a small tree of nodes whose literal segments are compared with
``memcmp`` against the path's ASCII buffer. The path is scanned once at C level (its
characters and segment boundaries; no split, no intermediate lists); only the returned
parameters are created as new strings. Resource ids are looked up in a C hash table and
service ids in a dict, both built once when the table is constructed.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from fastpath._router_py import PARAM_TYPES, _index, _valid_id, _valid_rid, _valid_service_id, parse_template

__all__ = ["RouteTable"]

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyUnicode_Substring(object o, Py_ssize_t start, Py_ssize_t end)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)

cdef enum:
    MAX_ID = 128
    MAX_SEGMENTS = 256
    P_RID = 0      # the order of PARAM_TYPES: the order parameters are tried in
    P_KEY = 1
    P_ID = 2
    P_SERVICE = 3
    P_TAIL = 4
    N_PARAMS = 5

cdef unsigned char PATH_OK[256]
cdef unsigned char RID_OK[256]
cdef unsigned char SVC_OK[256]
cdef unsigned char ID_OK[256]
cdef signed char HEX[256]


cdef void _init_tables():
    cdef int c
    cdef bytes path = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                       b"-._~!$&'()*+,;=:@%/")
    cdef bytes rid = b"abcdefghijklmnopqrstuvwxyz0123456789.-"
    cdef bytes svc = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
    cdef bytes ident = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-"
    for c in range(256):
        PATH_OK[c] = 0
        RID_OK[c] = 0
        SVC_OK[c] = 0
        ID_OK[c] = 0
        HEX[c] = -1
    for c in path:
        PATH_OK[c] = 1
    for c in rid:
        RID_OK[c] = 1
    for c in svc:
        SVC_OK[c] = 1
    for c in ident:
        ID_OK[c] = 1
    for c in range(10):
        HEX[48 + c] = c
    for c in range(6):
        HEX[65 + c] = 10 + c
        HEX[97 + c] = 10 + c


_init_tables()


cdef inline bint _is_rid(const unsigned char* s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned char c0
    if b <= a or b - a > MAX_ID:
        return False
    c0 = s[a]
    if not ((c0 >= 97 and c0 <= 122) or (c0 >= 48 and c0 <= 57)):
        return False
    for i in range(a + 1, b):
        if not RID_OK[s[i]]:
            return False
    return True


cdef inline bint _is_service_part(const unsigned char* s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t i
    if b <= a or b - a > MAX_ID:
        return False
    for i in range(a, b):
        if not SVC_OK[s[i]]:
            return False
    if s[a] == 46 and (b - a == 1 or (b - a == 2 and s[a + 1] == 46)):
        return False
    return True


cdef inline bint _is_id(const unsigned char* s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t i
    if b <= a or b - a > MAX_ID:
        return False
    for i in range(a, b):
        if not ID_OK[s[i]]:
            return False
    if s[a] == 46 and (b - a == 1 or (b - a == 2 and s[a + 1] == 46)):
        return False
    return True


# Result codes of _scan_segment.
cdef enum:
    SEG_BAD = 0
    SEG_PLAIN = 1      # no percent-escapes
    SEG_ASCII = 2      # escapes, all decoding to ASCII
    SEG_UTF8 = 3       # escapes with bytes >= 0x80: the UTF-8 still needs checking


cdef inline int _scan_segment(const unsigned char* s, Py_ssize_t a, Py_ssize_t b,
                              bint tail) noexcept nogil:
    """Check one segment's percent-encoding, decoded control characters and dot-ness."""
    cdef Py_ssize_t i = a
    cdef Py_ssize_t decoded = 0
    cdef Py_ssize_t dots = 0
    cdef int hi, lo, v
    cdef int result = SEG_PLAIN
    if b <= a:
        return SEG_BAD
    while i < b:
        if s[i] == 37:  # '%'
            if i + 2 >= b:
                return SEG_BAD
            hi = HEX[s[i + 1]]
            lo = HEX[s[i + 2]]
            if hi < 0 or lo < 0:
                return SEG_BAD
            v = hi * 16 + lo
            if v < 0x20 or v == 0x7F:
                return SEG_BAD
            if tail and (v == 47 or v == 92):  # encoded '/' or '\'
                return SEG_BAD
            if v == 46:
                dots += 1
            if v >= 0x80:
                result = SEG_UTF8
            elif result == SEG_PLAIN:
                result = SEG_ASCII
            i += 3
        else:
            if s[i] == 46:
                dots += 1
            i += 1
        decoded += 1
    if dots == decoded and decoded <= 2:
        return SEG_BAD
    return result


cdef object _decode_segment(const unsigned char* s, Py_ssize_t a, Py_ssize_t b):
    """Percent-decode s[a:b] (already scanned) as strict UTF-8; None when it is not UTF-8."""
    cdef char* buf = <char*>PyMem_Malloc(b - a + 1)
    cdef Py_ssize_t i = a
    cdef Py_ssize_t m = 0
    if buf == NULL:
        raise MemoryError()
    try:
        while i < b:
            if s[i] == 37:
                buf[m] = <char>(HEX[s[i + 1]] * 16 + HEX[s[i + 2]])
                i += 3
            else:
                buf[m] = <char>s[i]
                i += 1
            m += 1
        try:
            return PyUnicode_DecodeUTF8(buf, m, "strict")
        except UnicodeDecodeError:
            return None
    finally:
        PyMem_Free(buf)


cdef inline uint64_t _hash(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """A fast 64-bit hash of a short id, eight bytes at a time (ids come from the catalog)."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n
    cdef uint64_t chunk = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&chunk, s + i, 8)
        h = (h ^ chunk) * 0xFF51AFD7ED558CCDULL
        h ^= h >> 29
        i += 8
    chunk = 0
    if i < n:
        memcpy(&chunk, s + i, n - i)
        h = (h ^ chunk) * 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 32
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 29
    return h


cdef class _Node:
    """A position in the compiled templates: literal children, parameter children, a route."""

    cdef list lits        # [(bytes literal, _Node)]
    cdef list params      # [_Node or None] * N_PARAMS, by parameter type
    cdef int route        # the template ending here, or -1

    def __cinit__(self):
        self.lits = []
        self.params = [None] * N_PARAMS
        self.route = -1

    cdef _Node literal(self, bytes lit):
        cdef _Node child
        for entry in self.lits:
            if entry[0] == lit:
                return entry[1]
        child = _Node()
        self.lits.append((lit, child))
        return child

    cdef _Node param(self, int ptype):
        cdef _Node child = self.params[ptype]
        if child is None:
            child = _Node()
            self.params[ptype] = child
        return child


cdef class RouteTable:
    """An immutable route table compiled from path templates over resource and service ids.

    Resource ids are also held in a compact C open-addressing table: 8-byte slots (a hash
    tag and an offset) pointing into one contiguous arena of ``index, length, bytes``
    entries, so that a lookup touches two cache lines and needs no Python hash. Its
    contents come from the catalog, never from requests.
    """

    cdef dict _rids
    cdef dict _services
    cdef dict _static
    cdef _Node _root
    cdef Py_ssize_t _max_path
    cdef bytes _static_lengths  # _static_lengths[n] == 1 when a static path has length n
    cdef Py_ssize_t _static_max
    cdef uint64_t* _slots       # (hash >> 32) << 32 | (arena offset + 1); 0 = empty
    cdef unsigned char* _arena  # per id, 8-aligned: u32 index, u32 length, the id's bytes
    cdef Py_ssize_t _mask

    def __cinit__(self):
        self._slots = NULL
        self._arena = NULL

    def __dealloc__(self):
        PyMem_Free(self._slots)
        PyMem_Free(self._arena)

    cdef _build_slots(self, list ids):
        cdef Py_ssize_t count = len(ids)
        cdef Py_ssize_t cap = 8
        cdef Py_ssize_t size = 0
        cdef Py_ssize_t i, j, off, length
        cdef uint32_t u
        cdef uint64_t h
        cdef const unsigned char* data
        cdef str rid
        while cap < 2 * count:
            cap *= 2
        for rid in ids:
            size += (8 + PyUnicode_GET_LENGTH(rid) + 7) & ~7
        if size >= 0xFFFFFFFF:
            raise ValueError("too many resource ids for one route table")
        PyMem_Free(self._slots)
        PyMem_Free(self._arena)
        self._slots = <uint64_t*>PyMem_Calloc(cap, sizeof(uint64_t))
        self._arena = <unsigned char*>PyMem_Calloc(size + 8, 1)
        if self._slots == NULL or self._arena == NULL:
            raise MemoryError()
        self._mask = cap - 1
        off = 0
        for i in range(count):
            rid = ids[i]
            data = <const unsigned char*>PyUnicode_DATA(rid)
            length = PyUnicode_GET_LENGTH(rid)
            u = <uint32_t>i
            memcpy(self._arena + off, &u, 4)
            u = <uint32_t>length
            memcpy(self._arena + off + 4, &u, 4)
            memcpy(self._arena + off + 8, data, length)
            h = _hash(data, length)
            j = <Py_ssize_t>(h & <uint64_t>self._mask)
            while self._slots[j] != 0:
                j = (j + 1) & self._mask
            self._slots[j] = ((h >> 32) << 32) | <uint64_t>(off + 1)
            off += (8 + length + 7) & ~7

    cdef inline Py_ssize_t _find_rid(self, const unsigned char* s, Py_ssize_t a,
                                     Py_ssize_t b) noexcept:
        cdef uint64_t h = _hash(s + a, b - a)
        cdef uint64_t tag = (h >> 32) << 32
        cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>self._mask)
        cdef uint64_t slot
        cdef const unsigned char* entry
        cdef uint32_t index = 0, length = 0
        if self._slots == NULL:
            return -1
        while True:
            slot = self._slots[j]
            if slot == 0:
                return -1
            if (slot & 0xFFFFFFFF00000000ULL) == tag:
                entry = self._arena + <Py_ssize_t>((slot & 0xFFFFFFFFULL) - 1)
                memcpy(&length, entry + 4, 4)
                if length == <uint32_t>(b - a) and memcmp(entry + 8, s + a, b - a) == 0:
                    memcpy(&index, entry, 4)
                    return index
            j = (j + 1) & self._mask

    def __init__(self, templates, resource_ids=(), service_ids=(), max_path=2048):
        cdef _Node node
        if type(max_path) is not int or max_path < 1:
            raise ValueError(f"max_path must be a positive int, not {max_path!r}")
        if isinstance(templates, str):
            raise TypeError("templates must be a sequence of path templates, not a str")
        self._static = {}
        self._root = _Node()
        for r, template in enumerate(templates):
            segments = parse_template(template)
            if all(k == "lit" for k, _ in segments):
                if template in self._static:
                    raise ValueError(f"route template {template!r} appears twice")
                self._static[template] = r
                continue
            node = self._root
            for kind, text in segments:
                node = node.literal(text.encode("ascii")) if kind == "lit" else node.param(
                    PARAM_TYPES.index(text))
            if node.route >= 0:
                raise ValueError(f"route template {template!r} matches the same paths as route #{node.route}")
            node.route = r
        self._rids = _index(resource_ids, "resource id", _valid_rid)
        self._build_slots(list(self._rids))
        self._services = _index(service_ids, "service id", _valid_service_id)
        self._max_path = min(max_path, 1 << 62)
        self._static_max = max((len(p) for p in self._static), default=-1)
        lengths = bytearray(self._static_max + 1)
        for path in self._static:
            lengths[len(path)] = 1
        self._static_lengths = bytes(lengths)

    @property
    def max_path(self):
        """The longest path (in characters) that can match."""
        return self._max_path

    def __len__(self):
        return len(self._rids)

    def match(self, raw_path):
        """``(route, index, first, second)`` for ``raw_path`` (no query), or None."""
        cdef PyObject* hit
        cdef Py_ssize_t n, i, count
        cdef const unsigned char* s
        cdef Py_ssize_t starts[MAX_SEGMENTS]
        cdef Py_ssize_t ends[MAX_SEGMENTS]
        if type(raw_path) is not str:
            if not isinstance(raw_path, str):
                return None
            raw_path = PyUnicode_Substring(raw_path, 0, PyUnicode_GET_LENGTH(raw_path))
        n = PyUnicode_GET_LENGTH(raw_path)
        if n <= self._static_max and (<const unsigned char*>self._static_lengths)[n]:
            hit = PyDict_GetItem(self._static, raw_path)
            if hit != NULL:
                return (<object>hit, -1, None, None)
        if n < 2 or n > self._max_path or not PyUnicode_IS_ASCII(raw_path):
            return None
        s = <const unsigned char*>PyUnicode_DATA(raw_path)
        if s[0] != 47:
            return None
        count = 0
        starts[0] = 1
        for i in range(1, n):
            if not PATH_OK[s[i]]:
                return None
            if s[i] == 47:
                if i == starts[count] or count + 1 >= MAX_SEGMENTS:
                    return None  # an empty segment, or too many
                ends[count] = i
                count += 1
                starts[count] = i + 1
        if starts[count] == n:
            return None  # a trailing slash (or "/")
        ends[count] = n
        count += 1
        return self._walk(self._root, raw_path, s, starts, ends, count, 0, -1, None, None, 0)

    cdef object _walk(self, _Node node, object raw_path, const unsigned char* s,
                      Py_ssize_t* starts, Py_ssize_t* ends, Py_ssize_t count, Py_ssize_t i,
                      Py_ssize_t index, object first, object second, int nvalues):
        cdef _Node child
        cdef bytes lit
        cdef Py_ssize_t a, b, k
        cdef object found
        cdef int p
        if i == count:
            if node.route >= 0:
                return (node.route, index, first, second)
            child = node.params[P_TAIL]
            if child is not None and child.route >= 0:
                return self._answer(child.route, index, first, second, nvalues, "")
            return None
        a = starts[i]
        b = ends[i]
        for entry in node.lits:
            lit = <bytes>(<tuple>entry)[0]
            k = len(lit)
            if k == b - a and memcmp(s + a, <const char*>lit, k) == 0:
                found = self._walk(<_Node>(<tuple>entry)[1], raw_path, s, starts, ends, count, i + 1,
                                   index, first, second, nvalues)
                if found is not None:
                    return found
                break
        for p in range(N_PARAMS):
            child = node.params[p]
            if child is None:
                continue
            found = self._param(p, child, raw_path, s, starts, ends, count, i, index, first, second,
                                nvalues)
            if found is not None:
                return found
        return None

    cdef inline object _answer(self, int route, Py_ssize_t index, object first, object second,
                               int nvalues, object value):
        if nvalues == 0:
            return (route, index, value, None)
        return (route, index, first, value)

    cdef object _param(self, int p, _Node child, object raw_path, const unsigned char* s,
                       Py_ssize_t* starts, Py_ssize_t* ends, Py_ssize_t count, Py_ssize_t i,
                       Py_ssize_t index, object first, object second, int nvalues):
        cdef Py_ssize_t a = starts[i]
        cdef Py_ssize_t b = ends[i]
        cdef Py_ssize_t j
        cdef int scan
        cdef object value
        cdef PyObject* hit
        if p == P_RID:
            if not _is_rid(s, a, b):
                return None
            index = self._find_rid(s, a, b)
            value = PyUnicode_Substring(raw_path, a, b)
        elif p == P_ID:
            scan = _scan_segment(s, a, b, False)
            if scan == SEG_PLAIN:
                if not _is_id(s, a, b):
                    return None
                value = PyUnicode_Substring(raw_path, a, b)
            elif scan == SEG_BAD:
                return None
            else:  # percent-encoded (e.g. %40 for @): decode, then the same rule
                value = _decode_segment(s, a, b)
                if value is None or not _valid_id(value):
                    return None
        elif p == P_KEY:
            scan = _scan_segment(s, a, b, False)
            if scan == SEG_BAD:
                return None
            if scan == SEG_PLAIN:
                value = PyUnicode_Substring(raw_path, a, b)
            else:
                value = _decode_segment(s, a, b)
                if value is None:
                    return None
        elif p == P_SERVICE:
            if count - i < 5:
                return None
            for j in range(i, i + 5):
                if not _is_service_part(s, starts[j], ends[j]):
                    return None
            value = PyUnicode_Substring(raw_path, a, ends[i + 4])
            hit = PyDict_GetItem(self._services, value)
            index = -1 if hit == NULL else <object>hit
            return self._walk(child, raw_path, s, starts, ends, count, i + 5, index,
                              value if nvalues == 0 else first, value if nvalues == 1 else second,
                              nvalues + 1)
        else:  # P_TAIL: every remaining segment, answered as written
            if child.route < 0:
                return None
            for j in range(i, count):
                scan = _scan_segment(s, starts[j], ends[j], True)
                if scan == SEG_BAD:
                    return None
                if scan == SEG_UTF8 and _decode_segment(s, starts[j], ends[j]) is None:
                    return None
            return self._answer(child.route, index, first, second, nvalues,
                                PyUnicode_Substring(raw_path, a - 1, ends[count - 1]))
        return self._walk(child, raw_path, s, starts, ends, count, i + 1, index,
                          value if nvalues == 0 else first, value if nvalues == 1 else second,
                          nvalues + 1)
