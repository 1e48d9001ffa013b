# The managed-NQN rules in Nix, using builtins only so the NixOS module and the tests can both
# import it without nixpkgs. The binary has the same rules in src/config/nqn.ts; both are checked
# against test/fixtures/nqn-cases.json, and the messages are kept word for word the same so an
# operator sees one explanation whether the module or the binary refuses the value.
let
  maxBytes = 223;

  startsWith = head: s: builtins.substring 0 (builtins.stringLength head) s == head;

  # builtins.match is POSIX ERE over bytes and anchored on both ends; "[!-~]+" is exactly
  # 0x21-0x7e, so spaces, tabs and every byte of a multi-byte UTF-8 character fail it.
  printableNoSpace = s: builtins.match "[!-~]+" s != null;

  hasColon = s: builtins.match ".*:.*" s != null;

  # nqn.yyyy-mm.reverse.domain: with nothing after the colon covers every subsystem of a vendor.
  domainOnly = s: builtins.match "nqn\\.[0-9]{4}-[0-9]{2}\\.[^:]+:" s != null;

  charAt = s: i: builtins.substring i 1 s;

  # Why a prefix is unacceptable, or null.
  prefixProblem = prefix:
    if prefix == "" then "is empty; an empty prefix would match every NVMe subsystem, including the node's own system volumes"
    else if !printableNoSpace prefix then "must be printable ASCII without whitespace"
    else if !startsWith "nqn." prefix then "must start with 'nqn.'"
    else if !hasColon prefix then "must contain ':' (nqn.<yyyy-mm>.<reverse-domain>:<name>)"
    else if builtins.stringLength prefix > maxBytes then "is longer than ${toString maxBytes} bytes"
    else if domainOnly prefix then "is only a domain (nothing after ':'); it would cover every volume of that vendor, including diskless nodes' system volumes"
    else null;

  # The module hands the list to the binary comma-separated (RDS_CSI_PROTECTED_NQN), and the
  # binary splits flags and environment on commas: a comma inside a pattern would make two.
  patternProblem = pattern:
    if !(printableNoSpace pattern && startsWith "nqn." pattern) then "must start with 'nqn.' and be printable ASCII without whitespace"
    else if builtins.match ".*,.*" pattern != null then "must not contain ',' (lists of patterns are comma-separated)"
    else null;

  # Could one NQN match both the glob (`*` any run, `?` one character) and the prefix?
  # Same walk as patternOverlapsPrefix in src/config/nqn.ts: literal characters up to the
  # first `*`; past the shorter of the two, overlap if the pattern can go on.
  patternOverlapsPrefix = pattern: prefix:
    let
      patternLen = builtins.stringLength pattern;
      prefixLen = builtins.stringLength prefix;
      common = if patternLen < prefixLen then patternLen else prefixLen;
      walk = i:
        if i >= common then
          patternLen >= prefixLen || (patternLen > 0 && charAt pattern (patternLen - 1) == "*")
        else
          let c = charAt pattern i; in
          if c == "*" then true
          else if c == "?" then walk (i + 1)
          else if c != charAt prefix i then false
          else walk (i + 1);
    in
    walk 0;

  # The message is only built when the check fails: `nix-instantiate --strict` and the module
  # system both force messages, and a message about a null problem would itself throw.
  check = ok: message: { assertion = ok; message = if ok then "" else message; };

  danger = "The node plugin and gc only ever connect, disconnect or collect NVMe subsystems inside this prefix; "
    + "on a diskless node whose root or /var is an NVMe/TCP volume on the same RDS, a prefix that covers it lets the driver disconnect the node's own disks.";

  # `<vendor domain>:nixos-*`, the names diskless NixOS nodes boot from, for the prefix's vendor.
  nixosVolumesOf = prefix: "${builtins.head (builtins.match "([^:]*:).*" prefix)}nixos-*";

  # NixOS-style assertions ({ assertion, message }) for one configuration. `systemNqns` are the
  # node's own volumes and `protectedNqns` any other: both are protected, checked the same way.
  assertionsFor = { nqnPrefix, protectedNqns ? [ ], systemNqns ? [ ], option ? "services.rds-csi" }:
    let
      problem = prefixProblem nqnPrefix;
      listed = map (pattern: { inherit pattern; name = "systemNqns"; }) systemNqns
        ++ map (pattern: { inherit pattern; name = "protectedNqns"; }) protectedNqns;
      patternChecks = map
        ({ pattern, name }:
          let bad = patternProblem pattern; in
          check (bad == null) "${option}.${name} entry ${builtins.toJSON pattern} ${toString bad}.")
        listed;
      overlapChecks = map
        ({ pattern, name }:
          check (!patternOverlapsPrefix pattern nqnPrefix)
            ("${option}.${name} entry ${builtins.toJSON pattern} overlaps ${option}.nqnPrefix ${builtins.toJSON nqnPrefix}: "
              + "some NQN would be both managed and protected. Protected NQNs are the node's own system volumes and must lie outside the managed prefix "
              + "(for example nqnPrefix \"nqn.2000-02.com.mikrotik:pvc-\" next to protectedNqns [ \"nqn.2000-02.com.mikrotik:nixos-*\" ])."))
        listed;
      # Only for a prefix that passed its own rules: a domain-only one already has its message.
      nixosCheck = if problem != null then [ ] else
        let volumes = nixosVolumesOf nqnPrefix; in
        [
          (check (!patternOverlapsPrefix volumes nqnPrefix)
            "${option}.nqnPrefix ${builtins.toJSON nqnPrefix} covers ${builtins.toJSON volumes}, the names diskless NixOS nodes boot from, and no protection can carve them out of the prefix. ${danger}")
        ];
    in
    [ (check (problem == null) "${option}.nqnPrefix ${builtins.toJSON nqnPrefix} ${toString problem}. ${danger}") ]
    ++ nixosCheck
    ++ patternChecks
    ++ overlapChecks;

  # What evaluates but deserves a word: nothing declared as the node's own.
  warningsFor = { nqnPrefix, protectedNqns ? [ ], systemNqns ? [ ], option ? "services.rds-csi" }:
    if systemNqns != [ ] || protectedNqns != [ ] then [ ]
    else [
      ("${option}: neither systemNqns nor protectedNqns is set, so only the prefix keeps the driver off this node's own NVMe/TCP volumes. "
        + "List them in ${option}.systemNqns (on a diskless node: its root and /var volumes).")
    ];

  # Messages of the failing assertions only: what an operator would read.
  problemsFor = args: map (a: a.message) (builtins.filter (a: !a.assertion) (assertionsFor args));
in
{
  inherit maxBytes prefixProblem patternProblem patternOverlapsPrefix nixosVolumesOf assertionsFor warningsFor problemsFor;
}
