import ArgumentParser
import Foundation
import Swoop

/// The commands an operator runs against a Swoop server: `start [-d]` (the program's own,
/// with ``StartOptions``), `stop`, `reload` and `status`, each finding the server through
/// its pid file and talking to its master over the control socket.
///
/// Embed them in your program's command:
///
/// ```swift
/// import ArgumentParser
/// import Swoop
/// import SwoopControl
///
/// @main struct App: ParsableCommand {
///     static let configuration = CommandConfiguration(
///         subcommands: [Start.self] + SwoopControl.commands,
///         defaultSubcommand: Start.self)
/// }
///
/// struct Start: ParsableCommand {
///     @OptionGroup var options: StartOptions
///     @Option var pidFile: String = "/run/app.pid"
///     func run() throws {
///         var settings = ServerSettings()
///         settings.pidFile = pidFile
///         options.apply(to: &settings)
///         let server = Server(port: 9501, settings: settings)
///         // handlers …
///         try server.start()
///     }
/// }
/// ```
///
/// Then `app` (or `app start -d`) starts, `app status --pid-file P` shows the process tree
/// and the counters, `app reload --pid-file P` returns once the new workers serve, and
/// `app stop --pid-file P` returns once every process has exited.
public enum SwoopControl {
    /// `stop`, `reload` and `status`.
    public static var commands: [ParsableCommand.Type] {
        [StopCommand.self, ReloadCommand.self, StatusCommand.self]
    }
}

/// The options of a start command that Swoop itself acts on.
public struct StartOptions: ParsableArguments {
    @Flag(name: [.customShort("d"), .customLong("daemonize")],
          help: "Run in the background; return once the server is ready (0) or failed (non-zero).")
    public var daemonize = false

    public init() {}

    /// Copies the options into `settings`.
    public func apply(to settings: inout ServerSettings) {
        if daemonize { settings.daemonize = true }
    }
}

/// `stop --pid-file P`: stops the server gracefully; returns once every process has exited.
public struct StopCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop the server gracefully and wait until all of its processes have exited.")

    @Option(name: .customLong("pid-file"), help: "The server's pid file.") public var pidFile: String
    @Option(help: "Seconds to wait before giving up.") public var timeout: Double = 60

    public init() {}

    public func run() throws {
        try ServerControl(pidFile: pidFile).stop(timeout: .milliseconds(Int64(timeout * 1000)))
    }
}

/// `reload --pid-file P [--task-workers]`: replaces the workers; returns once the reload is
/// complete, non-zero if it was rolled back.
public struct ReloadCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Replace the workers (SIGUSR1) and wait until the reload completes; fails if it was rolled back.")

    @Option(name: .customLong("pid-file"), help: "The server's pid file.") public var pidFile: String
    @Flag(name: .customLong("task-workers"), help: "Replace only the task workers (SIGUSR2).") public var taskWorkers = false
    @Option(help: "Seconds to wait before giving up.") public var timeout: Double = 120

    public init() {}

    public func run() throws {
        try ServerControl(pidFile: pidFile).reload(taskWorkersOnly: taskWorkers,
                                                   timeout: .milliseconds(Int64(timeout * 1000)))
    }
}

/// `status --pid-file P`: exit 0 with the process tree and the counters when running; 3 when
/// not running, 1 when the pid file is stale (as LSB's `status` does).
public struct StatusCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the process tree, uptime and counters; exit 0 when running, 3 when not, 1 for a stale pid file.")

    @Option(name: .customLong("pid-file"), help: "The server's pid file.") public var pidFile: String
    @Flag(help: "Print the status as JSON.") public var json = false

    public init() {}

    public func run() throws {
        let control = ServerControl(pidFile: pidFile)
        let status: ServerStatus
        do {
            status = try control.status()
        } catch let error as ControlError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            if case let .notRunning(_, reason) = error, reason.hasPrefix("stale") { throw ExitCode(1) }
            if case .notRunning = error { throw ExitCode(3) }
            throw ExitCode(1)
        }
        let tree = control.processes(ofMaster: status.masterPid)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            print(StatusReport(status: status, processes: tree).text)
        }
    }
}

/// The text `status` prints.
struct StatusReport {
    var status: ServerStatus
    var processes: [ServerProcessEntry]

    var text: String {
        let stats = status.stats
        var lines: [String] = []
        let since = Date(timeIntervalSince1970: Double(status.startTime))
        lines.append("running: master pid \(status.masterPid), up \(Self.duration(status.uptime)) (since \(since)), swoop \(status.swoopVersion)\(status.reloading ? ", reloading" : "")")
        var depth: [Int32: Int] = [:]
        for process in processes {
            let level = (depth[process.parentPid] ?? -1) + 1
            depth[process.pid] = level
            var line = String(repeating: "  ", count: level + 1) + "pid \(process.pid)  \(Self.role(process.title))"
            if let worker = stats.workers.first(where: { $0.pid == process.pid }) {
                let what = worker.type == "task_worker" ? "tasks" : "requests"
                line += "  \(what) \(worker.request_count), in flight \(worker.in_flight)"
            }
            lines.append(line)
        }
        lines.append("connections \(stats.connection_num) (accepted \(stats.accept_count), closed \(stats.close_count)), requests \(stats.request_count)")
        lines.append("workers \(stats.worker_num) (idle \(stats.idle_worker_num)), task workers \(stats.task_worker_num) (idle \(stats.task_idle_worker_num)), tasks running \(stats.tasking_num), queued \(stats.task_queue_num), reloads \(stats.reload_count)")
        return lines.joined(separator: "\n")
    }

    /// `swoop-demo: worker 2` → `worker 2`.
    static func role(_ title: String) -> String {
        guard let colon = title.range(of: ": ") else { return title }
        return String(title[colon.upperBound...])
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds)
        let (days, hours, minutes, secs) = (total / 86400, total / 3600 % 24, total / 60 % 60, total % 60)
        if days > 0 { return "\(days)d \(hours)h \(minutes)m" }
        if hours > 0 { return "\(hours)h \(minutes)m \(secs)s" }
        if minutes > 0 { return "\(minutes)m \(secs)s" }
        return "\(secs)s"
    }
}
