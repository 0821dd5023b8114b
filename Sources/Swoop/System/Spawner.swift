#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSwoop

/// Starts processes from an executable on disk.
///
/// Swoop never forks without exec: the Swift runtime, Dispatch and NIO own threads, and a
/// forked copy of a multi-threaded process may hold locks that no thread will ever release.
/// The child side runs in C (`cswoop_spawn`) and touches nothing of Swift's until exec.
/// Exec is also what makes hot reload possible: a respawned worker runs the executable
/// that is on disk now.
struct Spawner {
    /// What to start.
    struct Command {
        var path: String
        var arguments: [String]
        var environment: [String: String]
        /// Descriptors the child gets, as (descriptor here, number in the child).
        var descriptors: [(CInt, CInt)] = [(0, 0), (1, 1), (2, 2)]
        /// The signal the child gets when the spawning thread dies (0: none).
        var parentDeathSignal: CInt = SIGKILL
        /// `CSWOOP_SPAWN_SETSID` for a new session (a daemon), or 0.
        var flags: CInt = 0
        /// The user and group the child runs as (nil: this process's).
        var credentials: Credentials?
    }

    /// Spawns `command` and returns the child's pid.
    static func spawn(_ command: Command) throws -> pid_t {
        var argv: [UnsafeMutablePointer<CChar>?] = command.arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] =
            command.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let map = command.descriptors.flatMap { [$0.0, $0.1] }
        let pid = map.withUnsafeBufferPointer { mapPtr in
            cswoop_spawn(command.path, &argv, &envp, mapPtr.baseAddress, CInt(command.descriptors.count),
                         command.flags, command.parentDeathSignal,
                         command.credentials.map { Int64($0.uid) } ?? -1, command.credentials.map { Int64($0.gid) } ?? -1)
        }
        if pid < 0 {
            throw SystemError(call: "execve", errno: errno, context: command.path)
        }
        return pid
    }
}

/// A user and group to run a process as.
struct Credentials: Sendable, Equatable {
    let uid: uid_t
    let gid: gid_t

    /// Looks up `user` (and `group`, else the user's primary group) in the system's
    /// databases; nil when neither is given.
    static func resolve(user: String?, group: String?) throws -> Credentials? {
        guard user != nil || group != nil else { return nil }
        var uid = geteuid()
        var gid = getegid()
        if let user {
            guard let entry = getpwnam(user) else {
                throw ServerError.invalidSetting(name: "user", reason: "no user named \(user)")
            }
            uid = entry.pointee.pw_uid
            gid = entry.pointee.pw_gid
        }
        if let group {
            guard let entry = getgrnam(group) else {
                throw ServerError.invalidSetting(name: "group", reason: "no group named \(group)")
            }
            gid = entry.pointee.gr_gid
        }
        return Credentials(uid: uid, gid: gid)
    }
}
