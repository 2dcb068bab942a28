# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled field projection; ``fastpath._projection_py`` is its specification (rules there).

Records are walked with ``PyDict_Next`` against a precomputed ``frozenset`` of allowed
names; ASCII values are masked by writing the new string's buffer directly.
"""

from cpython.dict cimport PyDict_Copy, PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.set cimport PySet_Contains
from libc.string cimport memcpy, memset

from fastpath._projection_py import _check

__all__ = ["Plan", "compile_plan", "project", "project_many", "mask_value"]

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    dict _PyDict_NewPresized(Py_ssize_t minused)
    bint PyUnicode_CheckExact(PyObject* o)

cdef enum:
    SEEN = 64  # per-plan cache of field-name objects already looked up (a power of 2)


cdef class Plan:
    """A compiled projection: allowed fields (None = all) and masks."""

    cdef readonly object fields
    cdef readonly dict masks
    cdef readonly bint is_identity
    cdef frozenset _allowed
    cdef Py_ssize_t _presize
    cdef tuple _mask_names
    cdef Py_ssize_t* _mask_keep
    cdef Py_ssize_t _n_masks
    # Decoders such as msgspec reuse one str object per field name, so the answer for a
    # name object is cached by its address (holding a reference, so the address stays
    # that object's): a pointer compare instead of a set lookup per field.
    cdef PyObject* _seen_key[SEEN]
    cdef unsigned char _seen_allowed[SEEN]

    def __cinit__(self):
        cdef int i
        self._mask_keep = NULL
        for i in range(SEEN):
            self._seen_key[i] = NULL
            self._seen_allowed[i] = 0

    def __init__(self, fields, dict masks):
        cdef Py_ssize_t i = 0
        cdef int j
        self.fields = fields
        self.masks = masks
        self.is_identity = fields is None and not masks
        self._allowed = None if fields is None else frozenset(fields)
        for j in range(SEEN):  # a plan re-initialised forgets what it had seen
            Py_XDECREF(self._seen_key[j])
            self._seen_key[j] = NULL
        self._presize = 0 if fields is None else len(self._allowed)
        self._mask_names = tuple(masks)
        self._n_masks = len(masks)
        PyMem_Free(self._mask_keep)
        self._mask_keep = <Py_ssize_t*>PyMem_Malloc((2 * self._n_masks + 1) * sizeof(Py_ssize_t))
        if self._mask_keep == NULL:
            raise MemoryError()
        for head, tail in masks.values():
            self._mask_keep[2 * i] = head
            self._mask_keep[2 * i + 1] = tail
            i += 1

    def __dealloc__(self):
        cdef int i
        PyMem_Free(self._mask_keep)
        for i in range(SEEN):
            Py_XDECREF(self._seen_key[i])
            self._seen_key[i] = NULL

    cdef inline int _allows(self, PyObject* name) except -1:
        cdef size_t slot
        cdef int allowed
        if not PyUnicode_CheckExact(name):
            return PySet_Contains(self._allowed, <object>name)
        slot = (<size_t>name >> 4) & (SEEN - 1)
        if self._seen_key[slot] == name:
            return self._seen_allowed[slot]
        allowed = PySet_Contains(self._allowed, <object>name)
        Py_XDECREF(self._seen_key[slot])
        Py_INCREF(<object>name)
        self._seen_key[slot] = name
        self._seen_allowed[slot] = allowed
        return allowed

    def __repr__(self):
        return f"Plan(fields={self.fields!r}, masks={self.masks!r})"


def compile_plan(fields, masks=None):
    """Compile a grant's field list (None or ["*"] = all) and masks into a plan."""
    fields, checked = _check(fields, masks)
    return Plan(fields, checked)


cdef object _mask(object value, Py_ssize_t head, Py_ssize_t tail):
    cdef str text
    cdef Py_ssize_t n
    cdef object out
    cdef char* w
    cdef const char* r
    if value is None:
        return None
    text = value if type(value) is str else (value if isinstance(value, str) else str(value))
    n = PyUnicode_GET_LENGTH(text)
    if n <= head + tail:
        return "*" * n
    if PyUnicode_IS_ASCII(text):
        out = PyUnicode_New(n, 127)
        w = <char*>PyUnicode_DATA(out)
        r = <const char*>PyUnicode_DATA(text)
        memcpy(w, r, head)
        memset(w + head, 42, n - head - tail)
        memcpy(w + n - tail, r + n - tail, tail)
        return out
    return text[:head] + "*" * (n - head - tail) + text[n - tail:]


def mask_value(value, Py_ssize_t head, Py_ssize_t tail):
    """Mask one value (see ``fastpath._projection_py``)."""
    return _mask(value, head, tail)


cdef dict _project(Plan plan, object data):
    cdef dict src
    cdef dict out
    cdef Py_ssize_t pos = 0
    cdef PyObject* k = NULL
    cdef PyObject* v = NULL
    cdef PyObject* hit
    cdef frozenset allowed = plan._allowed
    cdef Py_ssize_t i
    cdef object name
    if not isinstance(data, dict):
        raise TypeError(f"a record must be a dict, not {type(data).__name__}")
    src = <dict>data
    if allowed is None:
        out = PyDict_Copy(src)
    else:
        out = _PyDict_NewPresized(plan._presize)
        while PyDict_Next(src, &pos, &k, &v):
            if plan._allows(k):
                PyDict_SetItem(out, <object>k, <object>v)
    for i in range(plan._n_masks):
        name = plan._mask_names[i]
        hit = PyDict_GetItem(out, name)
        if hit != NULL:
            PyDict_SetItem(out, name,
                           _mask(<object>hit, plan._mask_keep[2 * i], plan._mask_keep[2 * i + 1]))
    return out


def project(Plan plan not None, data):
    """A new dict with only the plan's fields of ``data`` (masked), in ``data``'s order."""
    return _project(plan, data)


def project_many(Plan plan not None, records):
    """``project`` over a list of records."""
    cdef list out = []
    for record in records:
        out.append(_project(plan, record))
    return out
