"""airbuild's DAG-import harness: run by the image's own python3 inside the sandbox.

Imports Airflow once, lists the DAG files the way this Airflow version does (.airflowignore
syntax, safe-mode heuristic), then forks one child per file to import. The child gets its
limits (address space, processes, CPU) before any DAG code runs; this parent enforces the
wall time from outside and kills what the child left behind. One JSON document on stdout;
with --serve, one request per line on stdin and one JSON line per request (watch mode keeps
Airflow imported between builds).

A child reports only its own result: it loses this process's stdout and stdin before any DAG
code runs, and this process is not dumpable, so the child cannot reach our descriptors or
memory through /proc. What a child prints and raises is read in bounded pieces.

This file is copied into the sandbox as it is and needs nothing but the standard library and the
image's Airflow; its parameters come as JSON (a request file, or one request per line with
--serve). airbuild itself imports it only for VERSION (part of the results' key) and tests.
"""

import ctypes
import gc
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import re
import resource
import select
import signal
import sys
import time
import traceback
import warnings

VERSION = "5"  # of what the harness reports: a new one re-imports every cached file
REQUEST = {}
ALLOWED_WRITES = ()
DagBag = None  # imported once, before the first fork
DAGBAG_OPTIONS = None
FROZEN_AT = 0    # len(sys.modules) when the heap was last frozen for forking
PROCESS_CHECK_S = 0.05  # how often a running import's processes are counted
EXIT_POLL_S = 0.005  # without a pidfd: how often a child that closed its pipes is checked for its exit
CAPTURED_BYTES = 64 << 10  # of a file's stdout, stderr, error message and traceback, each
RESULT_BYTES = 1 << 20  # a child's whole result document; more is not a result
REPORTED_AT = 0  # len(sys.modules) when uncompiled() last looked
RESULT = None  # the original stdout, where results go (main() moves everything else printed to stderr)
# Reaching out over IP at parse time; local plumbing (socketpair, AF_UNIX, bind) is left alone.
NETWORK_EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg"}


def main():
    global RESULT
    # The result goes to the original stdout; everything else printed (Airflow's logs) to stderr.
    RESULT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    not_dumpable()
    # As the namespace's init we get only the signals we handle: Python's SIGINT handler would let a
    # child stop us. airbuild ends a run by killing the sandbox, never by SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve = sys.argv[1] == "--serve"
    requests = (json.loads(line) for line in sys.stdin if line.strip()) if serve else [json.load(open(sys.argv[1]))]
    global REQUEST, ALLOWED_WRITES
    airflow, error = load_airflow()
    for request in requests:
        REQUEST, ALLOWED_WRITES = request, tuple(request["writable"])
        if airflow:
            dags_folder_on_path(REQUEST["dags_folder"])
        emit(handle(airflow) if airflow else {"airflow_version": None, "error": error})


def not_dumpable():
    """Our /proc entries (fd/, mem, environ) become the kernel's, not the sandbox user's: a child that
    runs DAG code cannot open our stdout through /proc/<pid>/fd or read our memory. Children
    inherit it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, SUID_DUMP_DISABLE
    except (OSError, AttributeError):
        pass


def dags_folder_on_path(folder):
    """sys.path as Airflow builds it: PYTHONPATH, site-packages, then (appended by Airflow's settings) the
    config and plugins folders; the DAG processor appends the DAG folder (Airflow 2's settings did too)."""
    if folder not in sys.path:
        sys.path.append(folder)


def load_airflow():
    global DagBag
    try:
        import airflow  # the image's Airflow: importable only here, in the sandbox, once the environment is set
    except Exception as exc:
        return None, f"Airflow cannot be imported in the image: {exc}"
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.2
    except ImportError:
        from airflow.models.dagbag import DagBag  # Airflow < 3.2
    install_placeholders()
    remember_safe_mode_checks()
    return airflow, None


def handle(airflow):
    started = time.monotonic()
    files = list_files(REQUEST["dags_folder"])
    known = set(REQUEST["known"])
    todo = [path for path in files if os.path.relpath(path, REQUEST["dags_folder"]) not in known]
    index, count = REQUEST.get("shard", (0, 1))
    results = {}
    mine = todo[index::count]
    if mine:
        warm_up()
    for path in mine:  # one worker of `count`: every count-th file, the same split each run
        preimport(path)
        results[path] = import_in_child(path)
        if REQUEST.get("own_pid_namespace", True):  # unconfined, every process of the user is "left over"
            kill_leftovers()
    return {"airflow_version": airflow.__version__, "files": files, "results": results,
            "harness_version": VERSION, "total_s": round(time.monotonic() - started, 3),
            "uncompiled": uncompiled()}


# -- what children share: Airflow's modules, imported here once -----------------------------------

def project_roots():
    """Where the project's own modules live (its dags/, plugins/, include/ and root): never pre-imported."""
    return (os.path.join(REQUEST.get("project_root") or "/nonexistent", ""),)


SCANNED_BYTES = 1 << 20  # of a DAG file, for its import lines
IMPORT_LINE = re.compile(rb"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([^#;\n]+))", re.M)


def imported_names(source):
    """The absolute module names on `source`'s import lines (`import a.b, c as d`, `from a.b import c`),
    at any indentation, found with a regular expression: reading the file as a syntax tree cost this
    process ~3 ms a file. An import line inside a string may add a name too many, an import after a `;`
    is missed: what is pre-imported only decides what the children share, never what they see (a
    child imports what is missing; the image's modules only, see provided_by_image)."""
    names = set()
    for match in IMPORT_LINE.finditer(source):
        if match.group(1):
            names.add(match.group(1).decode())
            continue
        for part in match.group(2).decode("utf-8", "replace").split(","):
            words = part.split()
            if words and MODULE_NAME.fullmatch(words[0]):
                names.add(words[0])
    return names


def preimport(path):
    """Import the modules `path` names before forking, as Airflow's own DAG processor does for airflow.*
    (parsing_pre_import_modules), and for every other module the image provides: every child then shares
    them instead of importing them again. Only modules of the image: the file's import lines are read
    (imported_names), never run, and a name the project's own directories would provide is left to the
    child (with its limits). A module that fails here is skipped: the child meets its error and reports it."""
    try:
        with open(path, "rb") as source:
            named = imported_names(source.read(SCANNED_BYTES))
    except OSError:
        return
    roots = project_roots()
    wanted = named | LEARNED
    LEARNED.clear()
    for name in sorted(n for n in wanted if n not in sys.modules and n not in FAILED):
        if provided_by_image(name, roots):
            with deadline(REQUEST["timeout_s"]):
                try:
                    importlib.import_module(name)
                except (Exception, SystemExit, Deadline):
                    FAILED.add(name)
    global FROZEN_AT
    if len(sys.modules) != FROZEN_AT:  # new shared objects: children must not copy them by collecting
        gc.collect()
        gc.freeze()
        FROZEN_AT = len(sys.modules)
        huge_pages()


FAILED = set()  # modules that did not pre-import: not tried again for every file that names them
LEARNED = set()  # modules the last child imported that the next file's pre-import also takes (see learnable)
LEARNED_PER_FILE = 2000
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def learnable(names):
    """Of the modules a child imported (Airflow imports many lazily while it parses: decorators, provider
    hooks, schema validators), the submodules of packages this process already holds: they are
    imported here too, for the next children, if the image provides them (provided_by_image). The list
    comes from DAG code's process, so it is checked as untrusted: names only, of imported packages,
    never a __main__."""
    if not isinstance(names, list):
        return set()
    found = set()
    for name in names[:LEARNED_PER_FILE]:
        if isinstance(name, str) and "." in name and MODULE_NAME.fullmatch(name) and name not in sys.modules \
                and name.split(".", 1)[0] in sys.modules and "__main__" not in name.split("."):
            found.add(name)
    return found


WARM_UP_DAG = """
from datetime import datetime, timedelta
try:
    from airflow.sdk import DAG, Param, TaskGroup, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param
    from airflow.utils.task_group import TaskGroup
try:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import BranchPythonOperator, PythonOperator


def _call(**context):
    return None


with DAG(dag_id="airbuild_warm_up", start_date=datetime(2024, 1, 1), schedule="@daily", catchup=False,
         default_args={"retries": 1, "retry_delay": timedelta(minutes=5)}, tags=["airbuild"],
         params={"region": Param("eu", type="string", enum=["eu", "us"]), "limit": Param(1, type="integer")}):
    previous = EmptyOperator(task_id="start")
    for group in range(3):
        with TaskGroup(group_id=f"group_{group}") as steps:
            first = BashOperator(task_id="bash", bash_command="echo {{ params.region }}")
            first >> [PythonOperator(task_id=f"step_{n}", python_callable=_call) for n in range(4)]
        previous >> steps
        previous = steps

    @task
    def items():
        return [1, 2, 3]

    @task
    def handle(item, factor):
        return item * factor

    mapped = handle.partial(factor=2).expand(item=items())
    checked = PythonOperator.partial(task_id="check", python_callable=_call).expand(op_kwargs=[{"a": 1}])
    branch = BranchPythonOperator(task_id="branch", python_callable=_call)
    previous >> mapped >> checked >> branch >> EmptyOperator(task_id="end", trigger_rule="none_failed")
"""
WARM_UP_PARSES = 3
WARMED = False


def warm_up():
    """Parse a DAG of the harness's own, here, before the first fork (a few times): Airflow's one-time
    set-up of a parse (its importer registry, configuration lookups, modules it imports lazily) and
    CPython's specialisation of the code a parse runs (which writes into the code objects) then happen
    once, in the pages every child shares, instead of in every child. Never a project file; the
    warm-up's module leaves sys.modules again. Best effort: an image where it fails is only not warmed."""
    global WARMED
    if WARMED:
        return
    WARMED = True
    path = os.path.join(ALLOWED_WRITES[0] if ALLOWED_WRITES else "/tmp/", "airbuild_warm_up_dag.py")
    before = len(sys.modules)
    guard = ProjectGuard(project_roots())
    sys.meta_path.insert(0, guard)
    try:
        with open(path, "w") as source:
            source.write(WARM_UP_DAG)
        with deadline(REQUEST["timeout_s"]):
            for _ in range(WARM_UP_PARSES):
                parse(path)
    except (Exception, SystemExit, Deadline):
        pass
    finally:
        sys.meta_path.remove(guard)
        for name in [n for n in itertools.islice(reversed(sys.modules), max(0, len(sys.modules) - before))
                     if "airbuild_warm_up_dag" in n]:
            del sys.modules[name]
        try:
            os.unlink(path)
        except OSError:
            pass


class ProjectGuard:
    """On sys.meta_path during the warm-up: a module the import system would load from the project (a
    project package shadowing part of airflow's namespace, say) fails to import instead, so no project
    code runs in this process; the warm-up is then given up."""

    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, name, path=None, target=None):
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is None:
                continue
            places = [spec.origin] if spec.has_location else list(spec.submodule_search_locations or [])
            if any(place.startswith(self.roots) for place in places if place):
                raise ImportError(f"{name} is the project's: not imported by the harness")
            return spec
        return None


MADV_COLLAPSE = 25  # Linux 6.1 and later
HUGE_PAGE = 1 << 21


def huge_pages():
    """Back this process's heap with 2 MiB pages where the kernel can (madvise MADV_COLLAPSE): fork then
    copies one page-table entry per 2 MiB instead of 512, and a child's exit frees as few. What a child
    writes is still copied 4 KiB at a time (the kernel splits a shared huge page it writes to), so
    children use no more memory. Only what is there now is collapsed (no MADV_HUGEPAGE): memory a child
    allocates later comes in 4 KiB pages, as before. Best effort: without the call (older kernels, other
    systems) nothing changes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
    except (OSError, AttributeError):
        return
    for fields in regions:
        # Anonymous writable memory (the interpreter's heap and arenas), whole 2 MiB-aligned spans of it.
        if len(fields) < 5 or "rw" not in fields[1] or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        start = (start + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        end &= ~(HUGE_PAGE - 1)
        if end - start >= HUGE_PAGE:
            libc.madvise(start, end - start, MADV_COLLAPSE)


def provided_by_image(name, roots):
    """`name` and each package above it are found outside the project (finding a submodule imports its
    packages, which are then checked first)."""
    parts = name.split(".")
    try:
        for depth in range(1, len(parts) + 1):
            spec = importlib.util.find_spec(".".join(parts[:depth]))
            if spec is None:
                return False
            # A package's own file, or a namespace package's folders (airflow's __path__ reaches into the
            # project's folders on sys.path: its submodules, not it, may be the project's).
            places = [spec.origin] if spec.has_location else list(spec.submodule_search_locations or [])
            if any(place.startswith(roots) for place in places if place):
                return False
    except (Exception, SystemExit):
        return False
    return True


class Deadline(BaseException):
    """A pre-import that ran past a file's own time limit."""


class deadline:
    """SIGALRM after `seconds`: a module that hangs while pre-imported is given up, not waited for."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self.expired)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        return False

    @staticmethod
    def expired(signo, frame):
        raise Deadline()


def uncompiled():
    """Source files of the image this process imported without a bytecode cache: airbuild compiles
    them into its unpacked copy of the image after the run, so the next harness starts faster.
    Named once: a served harness asks again only when it has imported more."""
    global REPORTED_AT
    if len(sys.modules) == REPORTED_AT:
        return []
    REPORTED_AT = len(sys.modules)
    roots = project_roots()
    paths = set()
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if isinstance(source, str) and source.endswith(".py") and not source.startswith(roots):
            try:
                if not os.path.exists(importlib.util.cache_from_source(source)):
                    paths.add(source)
            except (ValueError, NotImplementedError):
                pass
    return sorted(paths)


def emit(document):
    RESULT.write(json.dumps(document) + "\n")
    RESULT.flush()


def remember_safe_mode_checks():
    """Airflow's safe-mode check reads every file for "airflow" and "dag": a serving harness remembers
    the answer per file until its size or mtime changes."""
    try:
        import airflow.utils.file as files  # the image's Airflow (see load_airflow)
    except ImportError:
        return
    original = getattr(files, "might_contain_dag", None)
    if original is None:
        return
    answers = {}

    def might_contain_dag(file_path, safe_mode, zip_file=None, *args, **kwargs):
        if zip_file is not None or args or kwargs:
            return original(file_path, safe_mode, zip_file, *args, **kwargs)
        try:
            st = os.stat(file_path)
        except OSError:
            return original(file_path, safe_mode)
        key = (file_path, safe_mode, st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in answers:
            answers[key] = original(file_path, safe_mode)
        return answers[key]

    files.might_contain_dag = might_contain_dag


LISTED = {}  # folder -> (its layout, the files Airflow lists there without the safe-mode check)
RACY_NS = 1_000_000_000


def list_files(folder):
    """The DAG files Airflow lists in `folder`. A serving harness lists again only when the folder's
    layout changed (a directory's entries, an .airflowignore): an edit inside a file does not move
    them; the safe-mode check of each file is remembered per file (remember_safe_mode_checks)."""
    try:
        import airflow.utils.file as files  # the image's Airflow (see load_airflow)
    except ImportError:
        return sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.endswith(".py"))
    if not hasattr(files, "find_dag_file_paths"):  # another Airflow: no reuse
        return sorted(files.list_py_file_paths(folder, safe_mode=REQUEST["safe_mode"]))
    layout = folder_layout(folder)
    listed = LISTED.get(folder)
    if listed is None or listed[0] != layout:
        # A directory changed within the last second may change again within the same clock tick
        # without its time moving (as git's racy index): such a listing is not reused.
        racy = any(entry[1] >= time.time_ns() - RACY_NS for entry in layout)
        listed = (None if racy else layout, files.list_py_file_paths(folder, safe_mode=False))
        LISTED[folder] = listed
    if not REQUEST["safe_mode"]:
        return sorted(listed[1])
    return sorted(path for path in listed[1] if files.might_contain_dag(path, True))


def folder_layout(folder):
    """What Airflow's listing depends on besides the files' contents: every directory (followed through
    symlinks, as Airflow walks) with its change time, and every .airflowignore's identity."""
    layout = []
    for directory, _, names in os.walk(folder, followlinks=True):
        try:
            st = os.stat(directory)
        except OSError:
            continue
        layout.append((directory, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        if ".airflowignore" in names:
            try:
                ignore = os.stat(os.path.join(directory, ".airflowignore"))
            except OSError:
                continue
            layout.append((".airflowignore", ignore.st_mtime_ns, ignore.st_ctime_ns, ignore.st_size, ignore.st_ino))
    return layout


# -- connections and variables: environment first, then the project's placeholders, then a stand-in --

NOTSET = object()


def variable_value(key, default=NOTSET, default_var=NOTSET, deserialize_json=False, **_):
    raw = os.environ.get("AIRFLOW_VAR_" + key.upper())
    if raw is None:
        raw = REQUEST["variables"].get(key)
    if raw is None:
        for fallback in (default, default_var):
            if fallback is not NOTSET and fallback is not None:
                return fallback
        raw = "{}" if deserialize_json else f"airbuild-placeholder-{key}"
    return json.loads(raw) if deserialize_json and isinstance(raw, str) else raw


def connection(conn_id, *args, **kwargs):
    uri = os.environ.get("AIRFLOW_CONN_" + conn_id.upper()) or REQUEST["connections"].get(conn_id)
    for module, name in (("airflow.sdk", "Connection"), ("airflow.models.connection", "Connection")):
        try:
            cls = getattr(__import__(module, fromlist=[name]), name)
            break
        except (ImportError, AttributeError):
            continue
    if uri:
        try:
            return cls.from_uri(uri, conn_id=conn_id) if hasattr(cls, "from_uri") else cls(conn_id=conn_id, uri=uri)
        except Exception:
            pass
    return cls(conn_id=conn_id, conn_type="generic", host="localhost")


def install_placeholders():
    def patch(module, owner, attribute, function):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated import paths of older Airflows
                target = getattr(__import__(module, fromlist=[owner]), owner)
        except (ImportError, AttributeError):
            return
        setattr(target, attribute, staticmethod(function) if inspect.isclass(target) else function)

    for module in ("airflow.sdk", "airflow.models", "airflow.models.variable"):
        patch(module, "Variable", "get", variable_value)
    for module in ("airflow.sdk", "airflow.hooks.base", "airflow.sdk.bases.hook"):
        patch(module, "BaseHook", "get_connection", connection)
    for module in ("airflow.sdk", "airflow.models", "airflow.models.connection"):
        patch(module, "Connection", "get", connection)


# -- one file, in a child ---------------------------------------------------------------------

def import_in_child(path):
    result_r, result_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        for fd in (result_r, stdout_r, stderr_r):
            os.close(fd)
        child(path, result_w, stdout_w, stderr_w)
    for fd in (result_w, stdout_w, stderr_w):
        os.close(fd)
    streams = {result_r: Captured(RESULT_BYTES), stdout_r: Captured(CAPTURED_BYTES),
               stderr_r: Captured(CAPTURED_BYTES)}
    deadline, stopped, status = started + REQUEST["timeout_s"], None, None
    exited = exit_descriptor(pid)
    limit, counted_at = REQUEST["limits"]["processes"], started
    while True:
        if not streams[result_r].open:  # the child is done (or closed its channel): it must exit
            waited, code = os.waitpid(pid, os.WNOHANG)
            if waited:
                status = code
                break
        left = deadline - time.monotonic()
        if left <= 0:
            stopped = ("timeout", f"still importing after {REQUEST['timeout_s']} s: killed")
            break
        readable = [fd for fd, c in streams.items() if c.open]
        if not streams[result_r].open and exited is not None:
            readable.append(exited)  # its pipes are closed: wake when it has exited, not a poll later
        wait_s = min(left, PROCESS_CHECK_S)
        ready = select.select(readable, [], [], wait_s)[0] if readable else time.sleep(EXIT_POLL_S) or []
        for fd in ready:
            if fd != exited:
                streams[fd].read(fd)
        if streams[result_r].size > RESULT_BYTES:
            stopped = ("output", f"sent a result of more than {RESULT_BYTES >> 10} KiB: killed")
            break
        if time.monotonic() - counted_at >= PROCESS_CHECK_S:
            counted_at = time.monotonic()
            if processes_of(pid) > limit:
                stopped = ("processes", f"started more than {limit} processes: killed")
                break
    if stopped:
        kill_group(pid)
    # What the child printed last, until its pipes close (bounded: a grandchild may hold them open).
    drain_until = time.monotonic() + 0.5
    while any(c.open for fd, c in streams.items() if fd != result_r) and time.monotonic() < drain_until:
        ready, _, _ = select.select([fd for fd, c in streams.items() if c.open and fd != result_r], [], [], 0.05)
        for fd in ready:
            streams[fd].read(fd)
    for fd in streams:
        os.close(fd)
    if exited is not None:
        os.close(exited)
    if status is None:
        _, status = os.waitpid(pid, 0)
    elapsed = round(time.monotonic() - started, 3)
    output = {"stdout": streams[stdout_r].text(), "stdout_bytes": streams[stdout_r].size,
              "stderr": streams[stderr_r].text(), "stderr_bytes": streams[stderr_r].size}
    if stopped:
        return dict(failure(*stopped, elapsed), **output)
    try:
        result = json.loads(streams[result_r].data())
        LEARNED.update(learnable(result.get("modules")))
        result = {"dags": [{"dag_id": str(d["dag_id"]), "tasks": int(d["tasks"])} for d in result["dags"]],
                  "errors": [{k: capped(str(e[k])) for k in ("kind", "message", "traceback") if k in e}
                             for e in result["errors"]]}
    except (ValueError, KeyError, TypeError):
        if os.WIFSIGNALED(status):
            signo = os.WTERMSIG(status)
            kind = "cpu" if signo == signal.SIGXCPU else "killed"
            return dict(failure(kind, f"the import was killed by {signal.Signals(signo).name}", elapsed), **output)
        return dict(failure("crash", "the import ended without a result (exit status "
                                     f"{os.waitstatus_to_exitcode(status)})", elapsed), **output)
    result["duration_s"] = elapsed
    return dict(result, **output)


def exit_descriptor(pid):
    """A descriptor that turns readable when `pid` exits (a pidfd), or None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class Captured:
    """What one pipe carried: the first `limit` bytes kept, the total counted."""

    def __init__(self, limit):
        self.limit, self.size, self.chunks, self.open = limit, 0, [], True

    def read(self, fd):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            self.open = False
            return
        kept = min(len(chunk), max(0, self.limit - self.size))
        if kept:
            self.chunks.append(chunk[:kept])
        self.size += len(chunk)

    def data(self):
        return b"".join(self.chunks)

    def text(self):
        text = self.data().decode("utf-8", "replace")
        return text + (f"\n[... {self.size - self.limit} more bytes not kept]" if self.size > self.limit else "")


def capped(text, limit=CAPTURED_BYTES, total=None):
    """At most `limit` characters of `text`, saying how many of `total` (default: its length) were dropped."""
    total = len(text) if total is None else total
    if total <= limit:
        return text
    return text[:limit] + f"\n[... {total - limit} more characters not kept]"


def processes_of(pid):
    """How many processes the file's import runs, counted from outside: RLIMIT_NPROC does not bind a
    caller who is root on the host (the kernel exempts it), so this is the limit that always holds.
    In our own PID namespace every process but ours is the file's (setsid cannot hide one)."""
    own_namespace = REQUEST.get("own_pid_namespace", True)
    count = 0
    for other in other_pids():
        try:
            with open(f"/proc/{other}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()  # state, ppid, pgrp, ...
        except OSError:
            continue
        if fields[0] == b"Z":  # dead, waiting to be reaped: runs nothing
            continue
        count += 1 if own_namespace else int(fields[2]) == pid  # the child leads its own process group
    return count


def failure(kind, message, elapsed):
    return {"dags": [], "errors": [{"kind": kind, "message": message}], "duration_s": elapsed}


def child(path, result_w, stdout_w, stderr_w):
    os.setpgid(0, 0)
    # Nothing of the harness's own channels stays reachable: the result goes through result_w only.
    RESULT.close()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(stdout_w, 1)
    os.dup2(stderr_w, 2)
    for fd in (null, stdout_w, stderr_w):
        os.close(fd)
    limits = REQUEST["limits"]
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] << 20,) * 2)
    if REQUEST.get("rlimit_nproc", True):  # per user namespace under bwrap; elsewhere it would count
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)  # the user's every process
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    violations = []
    before = len(sys.modules)
    sys.addaudithook(lambda event, args: audit(event, args, violations))
    try:
        result = parse(path)
    except MemoryError:
        result = {"dags": [], "errors": [{"kind": "memory",
                                          "message": f"over the {limits['memory_mb']} MB memory limit"}]}
    except BaseException as exc:  # the harness itself must report, whatever the DAG raised
        result = {"dags": [], "errors": [{"kind": "import", "message": describe(exc),
                                          "traceback": capped_traceback(exc)}]}
    result["errors"] += [{"kind": "sandbox", "message": v} for v in dict.fromkeys(violations)]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    # The modules added last (sys.modules keeps insertion order), read from the end: walking all of it would
    # write a reference count into every module name's page, each a copy-on-write fault.
    added = max(0, len(sys.modules) - before)
    result["modules"] = list(itertools.islice(reversed(sys.modules), min(added, LEARNED_PER_FILE)))
    os.write(result_w, json.dumps(result, default=str).encode())
    os._exit(0)


def describe(exc):
    """`Type: message`, the message capped before anything copies it whole."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    return capped(f"{type(exc).__name__}: {capped(message)}" if message else type(exc).__name__)


def capped_traceback(exc):
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    return capped(f"Traceback (most recent call last):\n{capped(frames)}{describe(exc)}")


def audit(event, args, violations):
    if event in NETWORK_EVENTS and len(args) > 1 and isinstance(args[-1], tuple):
        violations.append(f"opened a network connection ({event} to {args[-1][0]}:{args[-1][1]})")
        raise PermissionError("airbuild sandbox: no network while parsing DAGs")
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and isinstance(path, (str, bytes)):
            absolute = os.path.abspath(os.fsdecode(path))
            if not absolute.startswith(ALLOWED_WRITES):
                violations.append(f"wrote outside its temporary directory ({absolute})")
                raise PermissionError(f"airbuild sandbox: {absolute} is read-only while parsing DAGs")


def parse(path):
    bag = DagBag(dag_folder=path, **dagbag_options())
    errors = [{"kind": classify(text), "message": summary(text), "traceback": head_and_tail(text)}
              for text in map(str, bag.import_errors.values())]
    dags = [{"dag_id": dag_id, "tasks": len(dag.tasks)} for dag_id, dag in sorted(bag.dags.items())
            if os.path.abspath(getattr(dag, "fileloc", path)) == os.path.abspath(path)]
    return {"dags": dags, "errors": errors}


def dagbag_options():
    """DagBag's options besides the file, for this Airflow version (looked up once, before the first fork)."""
    global DAGBAG_OPTIONS
    if DAGBAG_OPTIONS is None:
        parameters = inspect.signature(DagBag.__init__).parameters
        DAGBAG_OPTIONS = {"safe_mode": False}
        if "include_examples" in parameters:  # removed in Airflow 3.3
            DAGBAG_OPTIONS["include_examples"] = False
        if "load_op_links" in parameters:
            DAGBAG_OPTIONS["load_op_links"] = False
    return DAGBAG_OPTIONS


def classify(text):
    if "Cycle" in text or "cycle" in text:
        return "cycle"
    if "DuplicateTaskIdFound" in text or "already been added" in text:
        return "duplicate_task"
    if "Timeout" in text or "timed out" in text:
        return "timeout"
    return "import"


def summary(text):
    """The final exception of a traceback, `Type: message` (all of a multi-line message, capped): the
    first line at the left margin after the last frame. Found by searching, never by splitting, so a
    message of hundreds of MB is not copied."""
    frame = text.rfind('\n  File "')
    if frame < 0:
        frame = -1 if text.startswith('  File "') else None
    start = 0 if frame is None else None
    position = frame + 1 if frame is not None else 0
    while start is None:
        newline = text.find("\n", position)
        if newline < 0:
            start = frame + 1  # no line after the frame: the frame itself
        else:
            position = newline + 1
            if position < len(text) and not text[position].isspace():
                start = position
    return capped(text[start:start + CAPTURED_BYTES].strip(), total=len(text) - start)


def head_and_tail(text, limit=CAPTURED_BYTES):
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters not kept ...]\n{text[-half:]}"


# -- containment between files ---------------------------------------------------------------------

def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def other_pids():
    """Every process in /proc but this harness, its parent and the namespace's init."""
    ours = {os.getpid(), os.getppid(), 1}
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) not in ours]


def kill_leftovers():
    """Anything a DAG started and left running dies before the next file (we are in our own PID namespace)."""
    for other in other_pids():
        try:
            os.kill(other, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if os.getpid() == 1:  # the namespace's init (docker): the orphans are ours to reap
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.01)
            except ChildProcessError:
                break


if __name__ == "__main__":
    main()
