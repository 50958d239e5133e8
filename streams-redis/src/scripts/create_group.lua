-- Creates a group after a given entry when the stream's history reaches it
-- (the stream has given out that id), else from the beginning: a stream that
-- was lost and written anew since has nothing to skip.
-- KEYS[1]: the stream. ARGV[1]: group. ARGV[2]: the entry id.
-- Returns 1 when created, 0 when the group existed.
local key, group, after = KEYS[1], ARGV[1], ARGV[2]

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local start = '0'
local info = redis.pcall('XINFO', 'STREAM', key)
if type(info) == 'table' and not info.err then
  local last = field_of(info, 'last-generated-id')
  local ams, aseq = parse(after)
  local lms, lseq = parse(last or '')
  if ams and lms and (ams < lms or (ams == lms and aseq <= lseq)) then
    start = after
  end
end
local created = redis.pcall('XGROUP', 'CREATE', key, group, start, 'MKSTREAM')
if type(created) == 'table' and created.err then
  if string.find(created.err, 'BUSYGROUP', 1, true) then
    return 0
  end
  return created
end
return 1
