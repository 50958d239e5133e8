-- Claiming idle pending entries, with the delivery count of each claimed entry.
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: min idle ms.
-- ARGV[4]: where the scan starts: '0-0', an id (inclusive), or '(' and an id
-- (exclusive), as an earlier page returned it.
-- ARGV[5]: COUNT. ARGV[6]: '1' to end the page right after the first entry
-- that had been delivered before (its count after the claim is 2 or more).
-- ARGV[7]: most entries whose fields come back with the page (see below).
--
-- One XPENDING lists the next idle pending entries with their delivery
-- counts (at most COUNT; the server skips the others as it scans), and an
-- XCLAIM ... RETRYCOUNT <count + 1> JUSTID per distinct count takes them
-- (JUSTID: the entries are not converted to Lua values and back; the
-- caller reads them). XCLAIM skips entries deleted from the stream and
-- drops them from the pending list (Redis 7): they are the ones listed but
-- not claimed. A page of at most ARGV[7] claimed entries (a crash suspect
-- taken alone, usually) comes back with their fields, read here with
-- XRANGE: one round trip instead of two.
--
-- Returns {next start ('0-0' when the scan is done), claimed ids, deleted
-- ids, delivery counts}, and for a small page a fifth element, the claimed
-- entries as XRANGE gives them: the counts are in the order of the claimed
-- ids.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local start, count = ARGV[4], tonumber(ARGV[5])
local until_redelivered = ARGV[6] == '1'

local idle = redis.call('XPENDING', key, group, 'IDLE', ARGV[3], start, '+', count)
local chosen, before = {}, {}
local stop = nil
for i, p in ipairs(idle) do
  chosen[#chosen + 1] = p[1]
  before[#before + 1] = p[4]
  if until_redelivered and p[4] >= 1 then
    stop = i
    break
  end
end

-- Where the next page starts: after the last entry taken, unless the scan
-- reached the end of the pending list.
local next_start = '0-0'
if (stop and stop < #idle) or #idle >= count then
  next_start = '(' .. chosen[#chosen]
end

-- Claims each run of ids with the same count together (most pages have
-- one count), in chunks: Lua's unpack has a limit of a few thousand values.
-- XCLAIM returns the ids it claimed in the order given.
local taken, counts, deleted = {}, {}, {}
local chunk = 1000
local first = 1
while first <= #chosen do
  local n = before[first]
  local last = first
  while last < #chosen and last - first + 1 < chunk and before[last + 1] == n do
    last = last + 1
  end
  local args = {key, group, consumer, ARGV[3]}
  for i = first, last do
    args[#args + 1] = chosen[i]
  end
  args[#args + 1] = 'RETRYCOUNT'
  args[#args + 1] = n + 1
  args[#args + 1] = 'JUSTID'
  local got = redis.call('XCLAIM', unpack(args))
  local j = 1
  for i = first, last do
    if got[j] == chosen[i] then
      taken[#taken + 1] = chosen[i]
      counts[#counts + 1] = n + 1
      j = j + 1
    else
      deleted[#deleted + 1] = chosen[i]
    end
  end
  first = last + 1
end
if #taken > 0 and #taken <= tonumber(ARGV[7]) then
  local entries = {}
  for _, id in ipairs(taken) do
    local got = redis.call('XRANGE', key, id, id)
    if got[1] then
      entries[#entries + 1] = got[1]
    end
  end
  return {next_start, taken, deleted, counts, entries}
end
return {next_start, taken, deleted, counts}
