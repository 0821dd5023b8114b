import CSwoop

/// The process's name and title, as `ps` shows them.
enum ProcessTitle {
    /// The arguments the program was started with, kept from before any title rewrote them.
    static let originalArguments: [String] = (0..<Int(cswoop_original_argc())).map {
        String(cString: cswoop_original_argv(CInt($0)))
    }

    /// The program's name: the last component of argv[0].
    static var programName: String {
        let first = originalArguments.first ?? "swoop"
        return first.split(separator: "/").last.map(String.init) ?? first
    }

    /// Sets the title shown by `ps -o args`, such as `swoop-demo: worker 2`.
    static func set(_ title: String) {
        cswoop_set_process_title(title)
    }
}
