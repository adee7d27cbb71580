# C types for exchange.py when Cython compiles it as proxy._fast._exchange_c.
#
# Both protocols become extension types: every attribute is a C field with the name and the
# Python-visible value it has in the twin (`public`, so the pool, the server's sweep and tests
# read them as before), counters and flags are C integers, times are doubles. The methods the
# event loop, the pool and the server call stay Python methods; the internal steps of an
# exchange are C methods, so one request crosses the interpreter only where it must (the
# routing table, the counters, the access log).
#
# Internal methods return `object` (None): an exception propagates as it does in the twin,
# without the PyErr_Occurred check a `void ... except *` would add after every call.
cimport cython

from proxy._fast._http1_c cimport (
    RequestHead,
    ResponseHead,
    drop_header_lines,
    find_head_end,
    parse_request_head,
    parse_response_head,
)
from proxy._fast._routing_c cimport Decision, Target as RouteTarget

cdef int IDLE, ACTIVE, TUNNEL, LINGER, CLOSED
cdef int T_NONE, T_KEEPALIVE, T_HEAD, T_RESPONSE, T_LINGER
cdef double LINGER_TIME, LINGER_IDLE
cdef Py_ssize_t LINGER_MAX_BYTES
cdef int R_NONE, R_LENGTH, R_CHUNKED, R_CLOSE
cdef int P_UPSTREAM_FULL, P_PIPELINE, P_CONNECTING, P_POLICY
cdef Py_ssize_t MAX_RESPONSE_HEAD, MAX_PENDING, MAX_CONNECT_RETRIES, RESPONSE_MAX_HEADERS
cdef bytes CRLF
cdef tuple HEX_PAIRS
cdef double BOUND_VALUES[13]  # len(BOUNDS): a different length fails the module's import
cdef Py_ssize_t LAST_BOUND


cdef class RequestCounters:
    cdef public dict _index, _connect
    cdef public list _keys, _codes, _buckets, _seconds, _bytes_in, _bytes_out

    @cython.locals(codes=dict, bucket=Py_ssize_t)
    cpdef record(self, Py_ssize_t slot, int status, double seconds, object bytes_in, object bytes_out)


cdef class Stats:
    cdef public long long requests, upstream_connects, upstream_connect_errors, upstream_timeouts
    cdef public long long pool_hits, pool_misses, retries, accept_paused, reloads_ok, reloads_failed
    cdef public long long connections_evicted, connection_cap_reached
    cdef public list responses_by_class
    cdef public dict errors_by_flag, rejected_by_reason


cdef class ServerContext:
    cdef public Stats stats
    cdef public RequestCounters counters
    cdef public object limits, loop, mirror, table, policies, access_log, exporter
    cdef public object health, on_connection_closed
    cdef public PoolRegistry pools
    cdef public bint tracing, draining, immediate, drop_underscores, allow_trace
    cdef public Py_ssize_t max_clients
    cdef public bytes via11, via10
    cdef public set connections
    cdef public Py_ssize_t accepting
    cdef public list out
    cdef public bytes _id_prefix, _id_block
    cdef public unsigned long long _id_counter

    cpdef send(self, object transport, bytes data)
    @cython.locals(out=list, i=Py_ssize_t)
    cpdef flush(self)
    @cython.locals(counter=cython.ulonglong, low=Py_ssize_t)
    cpdef bytes new_request_id(self)


cdef class EndpointPool:
    cdef public object host, port, settings, stats
    cdef public list idle
    cdef public bint retired
    cdef public Py_ssize_t active

    @cython.locals(conn=Upstream, idle=list)
    cpdef Upstream acquire(self)
    cpdef release(self, Upstream conn, double now)
    cpdef discard(self, Upstream conn)


cdef class PoolRegistry:
    cdef public object stats
    cdef public dict pools

    @cython.locals(pool=EndpointPool)
    cpdef EndpointPool get(self, object host, object port, object settings)
    @cython.locals(pool=EndpointPool)
    cpdef EndpointPool for_endpoint(self, object endpoint)


cdef class Upstream:
    cdef public EndpointPool pool
    cdef public object transport
    cdef public Downstream owner
    cdef public bint alive, read_paused
    cdef public double idle_since

    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef close(self)


cdef class Downstream:
    cdef public ServerContext ctx
    cdef public object loop, transport, client_ip
    cdef public double head_timeout, keepalive_timeout, body_timeout, t_idle
    cdef public double exchange_deadline, body_seen, resp_seen, resp_idle, linger_until
    cdef public bint ignore_client_abort, drop_underscores
    cdef public Py_ssize_t lingered
    cdef public Py_ssize_t max_header_bytes, max_uri_bytes
    cdef public object max_headers
    cdef public int state, paused, timer, resp_mode, status
    cdef public bint writing_paused, client_eof, reused, retried, req_done, sent_continue, close_after
    cdef public bint resp_started, resp_chunk, upstream_reusable, trace_continued, upstream_attached, waiting
    cdef public double deadline, t_start, t_sent, t_done
    cdef public bytes buf, xff_tail, proto_line, forwarded_lines, request_id, resp_buf, claim_headers
    cdef public object retry_head, trace_out
    cdef public long long exchange, body_remaining, resp_remaining, bytes_in, bytes_out
    cdef public Py_ssize_t pending_bytes
    cdef public RequestHead req
    cdef public EndpointPool pool
    cdef public Decision decision
    cdef public object pending, decoder, resp_decoder
    cdef public Upstream upstream

    cdef _reset_exchange(self)

    @cython.locals(end=Py_ssize_t, size=Py_ssize_t, buf=bytes, req=RequestHead, path=bytes)
    cdef _next_request(self)
    cdef object _oversized(self, bytes buf)
    @cython.locals(ctx=ServerContext, method=bytes)
    cdef _begin(self, RequestHead req)
    cdef bint _max_forwards(self, RequestHead req) except -1
    @cython.locals(ctx=ServerContext)
    cdef _route(self, RequestHead req, bint may_wait)
    @cython.locals(ctx=ServerContext, pool=EndpointPool, conn=Upstream, timeout=double, now=double,
                   deadline=double)
    cdef _proceed(self, RequestHead req, Decision decision)
    cdef _mirror(self, Decision decision)
    @cython.locals(parts=list)
    @cython.locals(route_target=RouteTarget)
    cdef bytes _upstream_head(self, RequestHead req, Decision decision, bytes rid)

    @cython.locals(remaining=cython.longlong, used=Py_ssize_t, deadline=double)
    cdef bytes _request_body(self, bytes data)
    cdef _send_up(self, bytes data)
    cdef _other_endpoint(self, object failed, int attempts)
    cdef _attach(self, Upstream conn, bint reused, double now)
    cdef _upstream_write_paused(self, bint paused)
    cdef _upstream_data(self, bytes data)

    @cython.locals(end=Py_ssize_t, size=Py_ssize_t, body_len=Py_ssize_t, status=int, mode=int, keep=bint,
                   req=RequestHead, resp=ResponseHead, buf=bytes, parts=list, timeout=double,
                   remaining=cython.longlong, out=bytes, route_target=RouteTarget)
    cdef _response_head(self, bytes data)

    @cython.locals(mode=int, done=bint, remaining=cython.longlong, used=Py_ssize_t)
    cdef _response_body(self, bytes data, bytes head=*)
    cdef _start_tunnel(self, ResponseHead resp, bytes rest)
    cdef _upstream_lost(self, Upstream conn)
    @cython.locals(conn=Upstream)
    cdef _response_done(self)
    cdef _finish_exchange(self)
    cdef _fail(self, object error)
    cdef _answer_error(self, object error)
    cdef _answer_local(self, int status, bytes extra, bytes content_type, bytes body)
    cdef _send_answer(self, bytes response, int status, str flag, bint linger)
    cdef _reject(self, object error)
    cdef _drop_upstream(self)

    @cython.locals(ctx=ServerContext, now=double, started=double, duration=double, sent=double, req=RequestHead,
                   decision=Decision)
    cdef _account(self, int status, str flag=*, double now=*)
    cdef _close(self)
    @cython.locals(now=double)
    cdef _linger(self)
    cdef _linger_read(self, Py_ssize_t size)
    @cython.locals(deadline=double, body=double, idle=double)
    cdef double _next_deadline(self)
    cdef _pause(self, int reason)
    cdef _resume(self, int reason)
    cdef _arm(self, int kind, double seconds)

cdef bint _COMPILED

@cython.locals(data=cython.p_const_uchar, i=Py_ssize_t, n=Py_ssize_t, c=cython.uchar)
cdef bint _may_have_dot_segment(bytes path) except -1
