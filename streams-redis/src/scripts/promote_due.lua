-- Moves due retries from a group's schedule into its ready stream.
-- KEYS[1]: the schedule (sorted set, score = due time in ms).
-- KEYS[2]: the ready stream.
-- ARGV[1]: most entries moved.
-- Returns {promoted, ms until the next due entry or -1 if none is left}, or
-- {-1, why} when the schedule cannot be read (a foreign value at its key):
-- the caller goes on with its other schedules.
--
-- Self-contained, so that consumers in other languages can EVAL this very
-- text (see docs/wire-format.md, "Retries for consumers in other languages").
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready_type = redis.call('TYPE', KEYS[2])['ok']
if ready_type ~= 'stream' and ready_type ~= 'none' then
  return {-1, 'WRONGTYPE the ready stream holds a ' .. ready_type}
end
local due = redis.pcall('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if type(due) == 'table' and due.err then
  return {-1, due.err}
end
-- A member written by move_entry: an even-length array of strings whose
-- third element on are the entry's field-value pairs.
local function fields_of(member)
  local ok, t = pcall(cmsgpack.unpack, member)
  if not ok or type(t) ~= 'table' or #t < 4 or #t % 2 ~= 0 then
    return nil
  end
  for i = 1, #t do
    if type(t[i]) ~= 'string' then
      return nil
    end
  end
  return t
end
local moved = 0
for _, member in ipairs(due) do
  local t = fields_of(member)
  local added
  if t then
    added = redis.pcall('XADD', KEYS[2], '*', unpack(t, 3))
  end
  if not t or (type(added) == 'table' and added.err) then
    -- Not written by move_entry: deliver it as it is rather than lose it.
    added = redis.pcall('XADD', KEYS[2], '*', 'schedule_member', member)
  end
  if type(added) == 'table' and added.err then
    -- Nothing can be added (the server is out of memory, say): what moved
    -- so far stays moved; the rest waits for the next promotion.
    return {-1, added.err}
  end
  redis.call('ZREM', KEYS[1], member)
  moved = moved + 1
end
local next_due = -1
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 2 then
  next_due = math.max(0, tonumber(head[2]) - now)
end
return {moved, next_due}
