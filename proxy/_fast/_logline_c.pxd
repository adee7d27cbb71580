# C types for logline.py when Cython compiles it as proxy._fast._logline_c.
#
# The compiled path writes each line into the formatter's bytearray through an unsigned char*
# (`buf`), without bounds checks: _put_line reserves a bound on the line's length (_LINE_FIXED
# plus the length of every variable text) before it writes, and takes the pointer after the
# buffer may have moved. Times and durations become C doubles only after the exact-type check,
# and the fast path takes them only in ranges where C's truncating cast equals Python's int();
# ints are checked to be 0..2**63-1 before they become C integers; the sticky hash becomes an
# unsigned long long, which raises OverflowError past 64 bits as int.to_bytes(8) does.
cimport cython
from libc.string cimport memcpy

cdef bint _COMPILED
cdef object _encoder, _encode, _encode_lines, _strftime, _gmtime
cdef tuple _ERRORS
cdef Py_ssize_t _CACHE_MAX, _BUFFER_SIZE, _BUFFER_KEEP, _LINE_FIXED
cdef double _MAX_SECONDS, _MAX_TIME
cdef bytes _K_REQUEST_ID_Q, _K_REQUEST_ID, _K_CLIENT_Q, _K_CLIENT, _K_METHOD, _K_PATH_Q, _K_PATH
cdef bytes _K_STATUS_Q, _K_STATUS, _K_BYTES_IN, _K_BYTES_OUT, _K_DURATION, _K_UPSTREAM
cdef bytes _K_UPSTREAM_NULL, _K_ROUTE, _K_VERSION, _K_ENDPOINT, _K_LABELS, _K_STICKY, _K_FLAGS_Q
cdef bytes _K_STICKY_NULL, _END, _NULL, _DASH, _CLEAN

cdef bytes _escaped(object value)

cdef bytes _bytes_text(object value)

@cython.locals(view=cython.p_const_uchar, table=cython.p_const_uchar, n=Py_ssize_t, i=Py_ssize_t)
cdef bint _is_clean(bytes data) except -1

@cython.locals(data=cython.p_const_uchar, n=Py_ssize_t)
cdef Py_ssize_t _put(unsigned char* buf, Py_ssize_t pos, bytes text) noexcept

@cython.locals(end=Py_ssize_t, rest=cython.ulonglong, i=Py_ssize_t)
cdef Py_ssize_t _put_uint(unsigned char* buf, Py_ssize_t pos, unsigned long long n) noexcept

@cython.locals(fraction=cython.uint)
cdef Py_ssize_t _put_millis(unsigned char* buf, Py_ssize_t pos, unsigned long long us) noexcept


cdef class LineFormatter:
    cdef object _second, _second_text
    cdef long long _fast_second
    cdef bytes _fast_second_text
    cdef dict _names, _methods, _targets
    cdef bytearray _buffer

    @cython.locals(pos=Py_ssize_t, buf=cython.p_uchar)
    cpdef bytes format(self, list entries, object skipped)

    @cython.locals(lines=list, kept=list, out=list)
    cdef bytes _format_structs(self, list entries, object skipped)

    @cython.locals(seconds=double, ms=cython.longlong, duration_us=cython.longlong,
                   upstream_us=cython.longlong, has_sticky=bint, hash64=cython.ulonglong,
                   rid_clean=bint, path_clean=bint, methods=dict, second=cython.longlong,
                   second_text=bytes, need=Py_ssize_t, buf=cython.p_uchar, millis=cython.uint,
                   i=Py_ssize_t, digit=cython.uint, rid_text=bytes, path_text=bytes, method_text=bytes,
                   client_text=bytes, route_text=bytes, version_text=bytes, endpoint_text=bytes,
                   flags_text=bytes, labels_text=bytes, target=tuple, target_text=bytes,
                   targets=dict)
    cdef Py_ssize_t _put_line(self, object entry, Py_ssize_t pos, object skipped) except -1

    @cython.locals(names=dict)
    cdef bytes _name(self, object value)

    @cython.locals(line=bytes)
    cdef Py_ssize_t _put_struct(self, object entry, Py_ssize_t pos, object skipped) except -1

    @cython.locals(size=Py_ssize_t)
    cdef int _reserve(self, Py_ssize_t pos, Py_ssize_t need) except -1
