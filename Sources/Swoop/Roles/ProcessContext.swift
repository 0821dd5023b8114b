#if canImport(Glibc)
import Glibc
#endif

/// Which process this is, as the spawning process described it in the environment.
///
/// Every Swoop process runs the same executable; the master's children find their role,
/// their worker id and the master's IPC address in these variables.
struct ProcessContext: Sendable {
    static let roleKey = "SWOOP_ROLE"
    static let workerIdKey = "SWOOP_WORKER_ID"
    static let generationKey = "SWOOP_GENERATION"
    static let addressKey = "SWOOP_IPC"
    static let tokenKey = "SWOOP_TOKEN"
    static let masterPidKey = "SWOOP_MASTER_PID"
    static let managerPidKey = "SWOOP_MANAGER_PID"
    static let executableKey = "SWOOP_EXECUTABLE"
    /// Base mode: the listening sockets every worker inherits, one per listener, in order.
    static let listenKey = "SWOOP_LISTEN_FDS"
    /// The port each listener is bound to, as the master resolved them.
    static let portsKey = "SWOOP_PORTS"

    var role: ProcessRole
    var workerId: Int
    var generation: Int
    var ipcAddress: String
    var token: UInt64
    var masterPid: Int32
    var managerPid: Int32
    /// The executable every process is started from.
    var executable: String
    /// Base mode: the inherited listening sockets, by listener index.
    var listenDescriptors: [CInt] = []
    /// The listeners' bound ports (in the children; the master has them itself).
    var ports: [Int] = []

    static let current: ProcessContext = {
        func env(_ key: String) -> String? { getenv(key).map { String(cString: $0) } }
        let role: ProcessRole
        switch env(roleKey) {
        case "manager": role = .manager
        case "worker": role = .worker
        case "task-worker": role = .taskWorker
        default: role = .master
        }
        if role == .master {
            return ProcessContext(role: .master, workerId: -1, generation: 0, ipcAddress: "", token: 0,
                                  masterPid: getpid(), managerPid: 0, executable: currentExecutable())
        }
        return ProcessContext(
            role: role,
            workerId: env(workerIdKey).flatMap { Int($0) } ?? -1,
            generation: env(generationKey).flatMap { Int($0) } ?? 0,
            ipcAddress: env(addressKey) ?? "",
            token: env(tokenKey).flatMap { UInt64($0) } ?? 0,
            masterPid: env(masterPidKey).flatMap { Int32($0) } ?? 0,
            managerPid: env(managerPidKey).flatMap { Int32($0) } ?? getppid(),
            executable: env(executableKey) ?? currentExecutable(),
            listenDescriptors: (env(listenKey) ?? "").split(separator: ",").compactMap { CInt($0) },
            ports: (env(portsKey) ?? "").split(separator: ",").compactMap { Int($0) })
    }()

    /// The path of the running executable, resolved now: after a rebuild replaces the
    /// file, /proc/self/exe would name a deleted inode, while this path names the new one.
    static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return ProcessTitle.originalArguments.first ?? "" }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// This process's environment variables.
    static func currentEnvironment() -> [String: String] {
        var environment: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                environment[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return environment
    }

    /// The environment for a child of this process in `role`.
    func childEnvironment(role: ProcessRole, workerId: Int, generation: Int, managerPid: Int32) -> [String: String] {
        var environment = Self.currentEnvironment()
        environment[Self.roleKey] = role == .manager ? "manager" : role == .worker ? "worker" : "task-worker"
        environment[Self.workerIdKey] = String(workerId)
        environment[Self.generationKey] = String(generation)
        environment[Self.addressKey] = ipcAddress
        environment[Self.tokenKey] = String(token)
        environment[Self.masterPidKey] = String(masterPid)
        environment[Self.managerPidKey] = String(managerPid)
        environment[Self.executableKey] = executable
        return environment
    }
}
