# C types for http1.py when Cython compiles it as proxy._fast._http1_c.
#
# The parsers read a head through a `const unsigned char*` (the local `data`, and the first
# argument of the scanning helpers): a byte read is a C array read and a slice is one
# PyBytes_FromStringAndSize, without bounds checks. That is sound because every index is in
# range (http1.py, "scanning helpers": each scan stops at a CR, and a head must end with
# CRLFCRLF before any scan starts). Everything else keeps the build's bounds checks.
#
# The private constants and tables become C globals (a name declared here is no longer a
# Python attribute of the compiled module; the public ones stay Python objects). The heads
# and the chunked decoder become extension types: their attributes are C struct fields with
# the same names and the same Python-visible values. All head attributes are `object`, so
# anything may be stored in them as in the twin's slots; one difference remains: an attribute
# never set reads as None here, where the twin raises AttributeError (the parsers set all).
cimport cython

cdef Py_ssize_t _HT, _LF, _CR, _SP, _STAR, _COMMA, _SLASH, _COLON, _SEMICOLON, _QUESTION
cdef bytes _TOKEN_TABLE, _TARGET_TABLE, _HOST_TABLE, _VALUE_TABLE, _HEX_TABLE, _LOWER
cdef Py_ssize_t _F_CONTENT_LENGTH, _F_HOST, _F_X_REQUEST_ID, _F_TRANSFER_ENCODING, _F_CONNECTION
cdef Py_ssize_t _F_UPGRADE, _F_EXPECT, _F_X_FORWARDED_FOR, _F_TRACEPARENT, _F_DROPPED, _F_REQUEST_DROPPED
cdef tuple _KNOWN_NAMES, _METHODS
cdef bytes _KNOWN_CODES, _KNOWN_FIRST, _KNOWN_INITIALS
cdef Py_ssize_t _KNOWN_LONGEST, _REQUEST_DROP_MASK, _RESPONSE_DROP_MASK
cdef Py_ssize_t _CLOSE, _KEEP_ALIVE, _UPGRADE
cdef Py_ssize_t _N_UPPER, _N_UNDERSCORE
cdef int _SIZE, _DATA, _DATA_END, _TRAILER, _DONE
cdef Py_ssize_t _MAX_CHUNK_LINE, _MAX_TRAILER


cdef class RequestHead:
    cdef public object method, target, path, query, http_minor, headers, host, content_length
    cdef public object chunked, keep_alive, upgrade, expect_continue, forward_headers, xff
    cdef public object request_id, traceparent, tracestate


cdef class ResponseHead:
    cdef public object status, http_minor, reason, head, content_length, chunked, keep_alive
    cdef public object upgrade, verbatim
    cdef public list pieces
    cdef public Py_ssize_t status_end


@cython.locals(stop=Py_ssize_t, i=Py_ssize_t)
cdef Py_ssize_t _find_lf(bytes data, Py_ssize_t start, Py_ssize_t end) except -2


cdef class ChunkedDecoder:
    cdef public int state
    cdef public unsigned long long remaining  # a chunk size has at most 16 hex digits
    cdef public bytes line
    cdef public Py_ssize_t trailer_bytes
    cdef public bint done
    cdef public object error

    @cython.locals(pieces=list, pos=Py_ssize_t, end=Py_ssize_t, state=int, take=Py_ssize_t,
                   newline=Py_ssize_t, line=bytes, start=Py_ssize_t, last=Py_ssize_t)
    cpdef tuple feed(self, bytes data)

    @cython.locals(limit=Py_ssize_t, semicolon=Py_ssize_t, extension=bytes, size=cython.ulonglong,
                   c=cython.uchar)
    cdef _size_line(self, bytes line, Py_ssize_t start, Py_ssize_t end)

    @cython.locals(colon=Py_ssize_t, value=bytes)
    cdef _trailer_line(self, bytes line)


@cython.locals(crlf=Py_ssize_t)
cdef object _refuse(bytes head, object error, object fault)

cdef object _framing_fault(bytes head, object error)

cdef object _refuse_field(bytes head, object error, object too_many, object max_headers, object fault)

# The scanners read a head through a const unsigned char* ("data"): no bounds checks; http1.py
# says why every index is in range.
@cython.locals(i=Py_ssize_t, c=cython.uchar)
cdef object _field_fault(const unsigned char* data, Py_ssize_t start, object error)

@cython.locals(table=cython.p_const_uchar)
cdef Py_ssize_t _name_end(const unsigned char* data, Py_ssize_t i) noexcept

@cython.locals(table=cython.p_const_uchar, kind=Py_ssize_t)
cdef Py_ssize_t _name_kind(const unsigned char* data, Py_ssize_t start, Py_ssize_t end) noexcept

@cython.locals(c=cython.uchar)
cdef Py_ssize_t _skip_blanks(const unsigned char* data, Py_ssize_t start, Py_ssize_t end) noexcept

@cython.locals(c=cython.uchar)
cdef Py_ssize_t _trim_end(const unsigned char* data, Py_ssize_t start, Py_ssize_t end) noexcept

@cython.locals(table=cython.p_const_uchar)
cdef Py_ssize_t _value_end(const unsigned char* data, Py_ssize_t i) noexcept

cdef bint _all_in(const unsigned char* data, Py_ssize_t start, Py_ssize_t end,
                  const unsigned char* table) noexcept

@cython.locals(i=Py_ssize_t)
cdef bint _equals(const unsigned char* data, Py_ssize_t start, Py_ssize_t end, bytes expected) except -1

@cython.locals(i=Py_ssize_t, lower=cython.p_const_uchar)
cdef bint _equals_lower(const unsigned char* data, Py_ssize_t start, Py_ssize_t end,
                        bytes expected) except -1

@cython.locals(length=Py_ssize_t, initial=cython.uchar, k=Py_ssize_t, stop=Py_ssize_t)
cdef Py_ssize_t _known_name(const unsigned char* data, Py_ssize_t start, Py_ssize_t end) except -2

cdef bint _is_digit(Py_ssize_t c) noexcept

@cython.locals(result=cython.longlong, stop=Py_ssize_t, first=Py_ssize_t, last=Py_ssize_t,
               length=cython.longlong, c=cython.uchar)
cdef long long _content_length(const unsigned char* data, Py_ssize_t start, Py_ssize_t end,
                               long long previous) noexcept

@cython.locals(bits=Py_ssize_t, stop=Py_ssize_t, first=Py_ssize_t, last=Py_ssize_t)
cdef Py_ssize_t _connection_tokens(const unsigned char* data, Py_ssize_t start, Py_ssize_t end,
                                   list named) except -1

@cython.locals(methods=tuple, k=Py_ssize_t, method=bytes)
cdef bytes _method(const unsigned char* data, Py_ssize_t end)

cdef bint _is_complete(const unsigned char* data, Py_ssize_t n) noexcept

@cython.locals(i=Py_ssize_t)
cdef bint _contains(const unsigned char* data, Py_ssize_t start, Py_ssize_t end, Py_ssize_t c) noexcept

cdef bint _COMPILED

# The exchange calls it directly (cimport): a C call per head read.
@cython.locals(data=cython.p_const_uchar, n=Py_ssize_t, i=Py_ssize_t, c=cython.uchar)
cpdef Py_ssize_t find_head_end(bytes buf) except -2

@cython.locals(data=cython.p_const_uchar, n=Py_ssize_t, spaces=Py_ssize_t, sp1=Py_ssize_t,
               sp2=Py_ssize_t, i=Py_ssize_t, c=cython.uchar, eol=Py_ssize_t, target_end=Py_ssize_t,
               tstart=Py_ssize_t, question=Py_ssize_t, table=cython.p_const_uchar, vstart=Py_ssize_t,
               minor=int, method=bytes, target=bytes, fields=list, count=Py_ssize_t,
               content_length=cython.longlong, length_lines=Py_ssize_t, connection=Py_ssize_t,
               named=list, expect_continue=bint, traceparent_seen=bint, host_seen=bint, rebuild=bint,
               pieces=list, run=Py_ssize_t, stop=Py_ssize_t, start=Py_ssize_t, k=Py_ssize_t, name=bytes,
               code=Py_ssize_t, vend=Py_ssize_t, value=bytes, chunked=bint, keep_alive=bint,
               merged_length=cython.longlong, absolute=bint, req=RequestHead, kind=Py_ssize_t,
               underscored=bint, kept_fields=list)
cpdef RequestHead parse_request_head(bytes head, object max_uri, object max_headers, bint drop_underscores=*)

@cython.locals(data=cython.p_const_uchar, n=Py_ssize_t, i=Py_ssize_t, c=cython.uchar, eol=Py_ssize_t,
               minor=int, d1=Py_ssize_t, d2=Py_ssize_t, d3=Py_ssize_t, status=int, reason=bytes,
               fields=list, count=Py_ssize_t, content_length=cython.longlong, length_lines=Py_ssize_t,
               connection=Py_ssize_t, named=list, rebuild=bint, pieces=list, run=Py_ssize_t,
               stop=Py_ssize_t, start=Py_ssize_t, k=Py_ssize_t, name=bytes, code=Py_ssize_t,
               vstart=Py_ssize_t, vend=Py_ssize_t, value=bytes, chunked=bint, keep_alive=bint,
               merged_length=cython.longlong, resp=ResponseHead)
cpdef ResponseHead parse_response_head(bytes head, object max_headers)

# The exchange calls it directly (cimport).
cpdef bytes drop_header_lines(bytes block, object names)
